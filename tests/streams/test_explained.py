"""``triage.streams.topics.explained``: a Kafka error carries the reason kafka-python only
logged, and names the settings to check."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from triage.app.settings import KafkaSettings
from triage.streams.topics import explained

SASL = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                     sasl_username="triage", sasl_password="wrong")
BOOTSTRAP = "Unable to bootstrap from ['127.0.0.1:9092']"
connection = logging.getLogger("kafka.net.connection")


def test_a_rejected_sasl_login_is_named_with_the_settings_to_check() -> None:
    with pytest.raises(KafkaConnectionError) as caught, explained(SASL):
        connection.error("<KafkaConnection node_id=bootstrap-0>: Connection lost: [Error 58] "
                         "SaslAuthenticationFailedError: SaslAuthenticationFailedError: "
                         "Authentication failed: Invalid username or password")
        raise KafkaTimeoutError(BOOTSTRAP)
    message = str(caught.value)
    assert "Authentication failed: Invalid username or password" in message
    assert "kafka.sasl_password" in message and "'triage'" in message


def test_only_closed_connections_under_sasl_point_at_the_login() -> None:
    """What kafka-python logged on a loaded CI machine for a wrong password: the broker's
    close, never its reason."""
    with pytest.raises(KafkaConnectionError) as caught, explained(SASL):
        for _ in range(3):
            connection.error("<KafkaConnection node_id=bootstrap-0>: Connection lost: "
                             "KafkaConnectionError: socket disconnected")
        raise KafkaTimeoutError(BOOTSTRAP)
    message = str(caught.value)
    assert BOOTSTRAP in message and "SASL authentication" in message
    assert "kafka.sasl_username and kafka.sasl_password" in message


def test_a_timed_out_sasl_login_says_it_can_be_the_credentials() -> None:
    """Also seen under load: the broker delays its answer to a rejected login (100 ms by
    default) and the client's request timed out first."""
    with pytest.raises(KafkaConnectionError) as caught, explained(SASL):
        connection.error("<KafkaConnection node_id=bootstrap-0>: Connection lost: [Error 7] "
                         "RequestTimedOutError: Request timed out after 85 ms")
        raise KafkaTimeoutError(BOOTSTRAP)
    message = str(caught.value)
    assert "RequestTimedOutError" in message and "SASL authentication" in message
    assert "kafka.sasl_password" in message


def test_closed_connections_without_sasl_keep_the_original_error() -> None:
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"), \
            explained(KafkaSettings()):
        connection.error("<KafkaConnection node_id=bootstrap-0>: Connection lost: "
                         "KafkaConnectionError: socket disconnected")
        raise KafkaTimeoutError(BOOTSTRAP)


def test_an_error_that_says_it_all_is_left_alone() -> None:
    with pytest.raises(KafkaTimeoutError, match=r"^KafkaTimeoutError: Unable"), explained(SASL):
        raise KafkaTimeoutError(BOOTSTRAP)

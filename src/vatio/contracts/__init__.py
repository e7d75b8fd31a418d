"""Wire contract v1: MQTT topics, the telemetry schema and its three encodings.

Other programs depend on this package's behaviour; change it only by adding v2.
"""

from vatio.contracts.codecs import (
    CODECS,
    CborCodec,
    Codec,
    JsonCodec,
    ProtobufCodec,
    decode_telemetry,
    encode_telemetry,
    telemetry_file_descriptor,
)
from vatio.contracts.schema import VERSION, DecodedBatch, Limits, format_ts, validate_batch
from vatio.contracts.topics import (
    ENCODINGS,
    PREFIX,
    TELEMETRY_SUBSCRIPTIONS,
    Encoding,
    Kind,
    ParsedTopic,
    alerts_topic,
    check_id,
    config_reported_topic,
    config_topic,
    id_problem,
    ota_topic,
    parse_topic,
    status_topic,
    telemetry_topic,
)

__all__ = [
    "CODECS",
    "ENCODINGS",
    "PREFIX",
    "TELEMETRY_SUBSCRIPTIONS",
    "VERSION",
    "CborCodec",
    "Codec",
    "DecodedBatch",
    "Encoding",
    "JsonCodec",
    "Kind",
    "Limits",
    "ParsedTopic",
    "ProtobufCodec",
    "alerts_topic",
    "check_id",
    "config_reported_topic",
    "config_topic",
    "decode_telemetry",
    "encode_telemetry",
    "format_ts",
    "id_problem",
    "ota_topic",
    "parse_topic",
    "status_topic",
    "telemetry_file_descriptor",
    "telemetry_topic",
    "validate_batch",
]

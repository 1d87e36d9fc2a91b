"""The wire format: pure encode/decode, and a fuzz of the decoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumaguard_hb.control.protocol import (
    BAD_ARGS,
    BAD_REQUEST,
    ERROR_CODES,
    MAX_LINE,
    TOO_LARGE,
    ProtocolError,
    decode_reply,
    decode_request,
    encode_error,
    encode_request,
    encode_result,
)


def test_round_trip() -> None:
    line = encode_request("status", {"x": 1}, 7)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    req = decode_request(line)
    assert (req.cmd, req.args, req.id) == ("status", {"x": 1}, 7)
    assert decode_reply(encode_result(7, {"a": "é"})) == {"a": "é"}


def test_error_reply_raises_with_code() -> None:
    with pytest.raises(ProtocolError) as err:
        decode_reply(encode_error(1, "not_found", "no camera matches 'x'"))
    assert err.value.code == "not_found"
    assert "no camera" in err.value.message


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json\n", BAD_REQUEST),
        (b"[1,2]\n", BAD_REQUEST),
        (b'{"args": {}}\n', BAD_REQUEST),
        (b'{"cmd": 5}\n', BAD_REQUEST),
        (b'{"cmd": "status", "args": [1]}\n', BAD_ARGS),
        (b'{"cmd": "status", "id": true}\n', BAD_REQUEST),
        (b'{"cmd": "status", "id": {"a": 1}}\n', BAD_REQUEST),
        (b"\xff\xfe\x00garbage\n", BAD_REQUEST),
        (b'{"cmd": "' + b"x" * MAX_LINE + b'"}\n', TOO_LARGE),
    ],
)
def test_bad_requests_have_stable_codes(line: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_request(line)
    assert err.value.code == code
    assert err.value.code in ERROR_CODES


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_decoder_never_fails_other_than_protocol_error_on_bytes(data: bytes) -> None:
    try:
        req = decode_request(data)
    except ProtocolError as err:
        assert err.code in ERROR_CODES
    else:
        assert isinstance(req.cmd, str) and req.cmd
        assert isinstance(req.args, dict)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_decoder_on_any_json_value(value: object) -> None:
    line = json.dumps(value).encode() + b"\n"
    try:
        req = decode_request(line)
    except ProtocolError as err:
        assert err.code in ERROR_CODES
    else:
        assert isinstance(value, dict) and value["cmd"] == req.cmd

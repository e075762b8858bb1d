"""The signature scheme, as a property: any body signed with a secret verifies with it, and with nothing else."""

import time

from hypothesis import given
from hypothesis import strategies as st

from pipeline.webhooks.signing import new_secret, signature_header, verify_signature

bodies = st.binary(max_size=2000)


@given(body=bodies)
def test_a_signed_body_verifies_with_its_secret(body):
    secret = new_secret()
    header = signature_header(secrets=[secret], timestamp=int(time.time()), body=body)
    assert verify_signature(secret=secret, header=header, body=body)


@given(body=bodies, tampered=bodies)
def test_another_body_or_secret_does_not_verify(body, tampered):
    secret = new_secret()
    header = signature_header(secrets=[secret], timestamp=int(time.time()), body=body)
    assert not verify_signature(secret=new_secret(), header=header, body=body)
    if tampered != body:
        assert not verify_signature(secret=secret, header=header, body=tampered)


def test_an_old_timestamp_is_refused_as_a_replay():
    secret = new_secret()
    header = signature_header(secrets=[secret], timestamp=int(time.time()) - 301, body=b"{}")
    assert not verify_signature(secret=secret, header=header, body=b"{}")
    assert verify_signature(secret=secret, header=header, body=b"{}", tolerance_seconds=600)


def test_either_secret_verifies_during_a_rotation():
    old, new = new_secret(), new_secret()
    header = signature_header(secrets=[new, old], timestamp=int(time.time()), body=b"{}")
    assert header.count("v1=") == 2
    assert verify_signature(secret=old, header=header, body=b"{}")
    assert verify_signature(secret=new, header=header, body=b"{}")

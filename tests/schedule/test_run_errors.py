"""A failed run's stored error never holds a secret: the process's own, or anything shaped like
an API key or a signing secret that a job's exception happened to carry."""

from __future__ import annotations

from dataclasses import replace

from gateway.schedule.runs import describe_error


def test_a_runs_error_masks_the_processes_secrets_and_key_shapes(settings):
    configured = replace(settings, secret_key="s3cr3t-process-key")
    error = RuntimeError("refused gk_live_abcdefghijklmnop1234 with whsec_c2VjcmV0c2VjcmV0 "
                         "under s3cr3t-process-key")
    text = describe_error(error, configured)
    assert text.startswith("RuntimeError: refused")
    for secret in ("gk_live_abcdefghijklmnop1234", "whsec_c2VjcmV0c2VjcmV0",
                   "s3cr3t-process-key"):
        assert secret not in text

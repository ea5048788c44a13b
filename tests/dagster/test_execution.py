"""Which failed steps run again: a store outage yes, bad input and Ctrl-C no."""

import os
import signal
import time

import pytest
from dagster import AssetCheckResult, asset, asset_check, materialize

import assets.execution as execution
from assets.execution import is_store_outage, retried_on_store_outage
from dataset_pipeline.store import RawUploadError, StoreError


@pytest.fixture(autouse=True)
def short_waits(monkeypatch):
    monkeypatch.setattr(execution, "STORE_RETRY_FIRST_WAIT_S", 0.01)


def _events(result, event_type: str) -> list:
    return [e for e in result.all_events if e.event_type_value == event_type]


def test_a_step_that_met_a_store_outage_runs_again_and_completes():
    attempts: list[int] = []

    @asset
    @retried_on_store_outage
    def flaky(context) -> int:
        attempts.append(context.retry_number)
        if len(attempts) < 3:
            raise StoreError("s3://bucket/store/tables/x.parquet: cannot reach the store (timed out)")
        return 7

    result = materialize([flaky], raise_on_error=False)
    assert result.success
    assert attempts == [0, 1, 2]
    assert len(_events(result, "STEP_UP_FOR_RETRY")) == 2
    assert result.output_for_node("flaky") == 7


def test_bad_input_fails_the_step_once_with_its_own_message():
    attempts: list[int] = []

    @asset
    @retried_on_store_outage
    def strict(context) -> None:
        attempts.append(context.retry_number)
        raise ValueError("reviews/b1/export.json: record 3: field 'label': unknown class 'mug'")

    result = materialize([strict], raise_on_error=False)
    assert not result.success
    assert attempts == [0]
    assert not _events(result, "STEP_UP_FOR_RETRY")
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "unknown class 'mug'" in failure.step_failure_data.error.cause.message


def test_the_retries_end_after_three_and_the_outage_is_reported():
    @asset
    @retried_on_store_outage
    def down(context) -> None:
        raise StoreError("s3://bucket/store/k: cannot reach the store (connection refused)")

    result = materialize([down], raise_on_error=False)
    assert not result.success
    assert len(_events(result, "STEP_UP_FOR_RETRY")) == execution.STORE_RETRIES
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "cannot reach the store" in str(failure.step_failure_data.error.to_string())


def test_a_generator_check_is_retried_too():
    attempts: list[int] = []

    @asset
    def thing() -> int:
        return 1

    @asset_check(asset=thing)
    @retried_on_store_outage
    def thing_readable(context):
        attempts.append(context.retry_number)
        if len(attempts) == 1:
            raise StoreError("s3://bucket/store/k: read failed (reset by peer)")
        yield AssetCheckResult(passed=True)

    result = materialize([thing, thing_readable], raise_on_error=False)
    assert result.success and attempts == [0, 1]
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed


def test_ctrl_c_inside_a_step_fails_the_run_without_a_retry():
    attempts: list[int] = []

    @asset
    @retried_on_store_outage
    def long_running(context) -> None:
        attempts.append(context.retry_number)
        os.kill(os.getpid(), signal.SIGINT)  # Dagster turns it into its interrupt error here
        time.sleep(30)  # the handler raises in here
        raise AssertionError("not reached: the interrupt ends the step")

    result = materialize([long_running], raise_on_error=False)
    assert not result.success
    assert attempts == [0]
    assert not _events(result, "STEP_UP_FOR_RETRY")
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (StoreError("s3://b/k: write failed (Could not connect to the endpoint URL)"), True),
        (ConnectionResetError("reset by peer"), True),
        (TimeoutError("timed out"), True),
        (RawUploadError("incoming/b/a.jpg: raw uploads are never modified by the pipeline"), False),
        (FileNotFoundError("reviews/b/export.json: no such file in the store"), False),
        (OSError("cannot identify image file 'incoming/b/a.jpg'"), False),  # PIL: a corrupt image
        (KeyError("mug"), False),
    ],
)
def test_what_counts_as_an_outage(error, outage):
    assert is_store_outage(error) is outage


def test_an_outage_wrapped_in_a_domain_error_still_counts():
    try:
        try:
            raise ConnectionRefusedError("connection refused")
        except ConnectionRefusedError as cause:
            raise ValueError("s3://b/tables/x.parquet: not a readable Parquet table") from cause
    except ValueError as wrapped:
        assert is_store_outage(wrapped)


def test_an_outage_hidden_with_from_none_does_not_count():
    """`raise ... from None` says the error it was handling does not explain it (the store's own
    FileNotFoundError, for one)."""
    try:
        try:
            raise ConnectionRefusedError("connection refused")
        except ConnectionRefusedError:
            raise FileNotFoundError("s3://b/reviews/x.json: no such file in the store") from None
    except FileNotFoundError as hidden:
        assert not is_store_outage(hidden)

from tests.conftest import Runs
from verifier.run import verify_run


def test_happy_path_writes_a_0600_bundle(runs: Runs) -> None:
    run_id = runs.approved()
    path = verify_run(runs.config(run_id))
    assert path.stat().st_mode & 0o777 == 0o600

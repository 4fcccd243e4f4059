"""`medbase serve`: the command's surface (starting it for real is test_endpoint's job)."""

from __future__ import annotations

from typer.testing import CliRunner

from medbase_ray.cli import app


def test_serve_takes_a_checkpoint_and_the_common_options():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "[CHECKPOINT]" in result.output.upper()
    for option in ("--config", "--preset", "--set", "--address"):
        assert option in result.output


def test_serve_rejects_a_missing_checkpoint_and_a_bad_config(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "nope" in result.output
    result = CliRunner().invoke(app, ["serve", "--set", "serve.max_batch_size=0"])
    assert result.exit_code == 2 and "serve.max_batch_size" in result.output

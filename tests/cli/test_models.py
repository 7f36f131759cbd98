"""`paddock models`, `upload` and `promote` against the real web server and worker: a real ONNX
file streamed up, validated by the worker, its report printed; refusals in the server's words."""

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from console.audit import Actor
from registry import services
from registry.models import Alias, RegisteredModel
from tests import models as built
from tests.cli.conftest import Paddock
from tests.conftest import child_env, spawn_web, stop


def test_models_list_shows_the_models_the_token_sees(engineer: Paddock, cast: dict[str, Any],
                                                     teams: dict[str, Any]) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"],
                          description="flowers", tags=["tabular", "demo"])
    services.create_model(actor=Actor(user=cast["outsider"]), name="secret", team=teams["other"])
    done = engineer("models", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["NAME  TEAM  LATEST  ALIASES  TAGS",
                                        "iris  ml    -       -        demo, tabular"]
    as_json = engineer("--json", "models", "list")
    assert as_json.returncode == 0
    [iris] = json.loads(as_json.stdout)
    assert (iris["name"], iris["team"], iris["tags"], iris["latest_version"]) == ("iris", "ml", ["demo", "tabular"],
                                                                                   None)
    searched = engineer("models", "list", "--query", "nothing-like-it", "--json")
    assert (searched.returncode, json.loads(searched.stdout)) == (0, [])


def test_upload_streams_the_file_waits_for_validation_and_prints_the_report(
        engineer: Paddock, cast: dict[str, Any], teams: dict[str, Any], celery_worker: Any, tmp_path: Path) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    artifact = tmp_path / "iris.onnx"
    artifact.write_bytes(built.mlp_onnx(inputs=8, outputs=3))
    done = engineer("upload", "iris", str(artifact), "--description", "first")
    assert done.returncode == 0, done.stdout + done.stderr
    # The progress bar (on stderr; its last state when stderr is not a terminal).
    assert re.search(r"uploading iris\.onnx .* 292/292 bytes", done.stderr), done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "iris v1: ready"
    assert re.fullmatch(r"  artifact  iris\.onnx, onnx, 292 B, sha256 [0-9a-f]{64}", lines[1])
    assert lines[2:5] == ["  inputs    x FP32 [-1, 8]", "  outputs   probs FP32 [-1, 3]", "  aliases   champion"]
    assert re.fullmatch(r"  runtime   onnxruntime \S+ on CPUExecutionProvider, loaded in [\d.]+ ms", lines[5])
    assert re.fullmatch(r"  batch 1   [\d.]+ ms per run -> probs \[1, 3\]", lines[6])
    # The same bytes again: the version they already are, said so; --json prints the version itself.
    again = engineer("upload", "iris", str(artifact), "--json")
    assert again.returncode == 0 and again.stderr == ""  # no progress bar under --json
    version = json.loads(again.stdout)
    assert (version["number"], version["status"], version["description"]) == (1, "ready", "first")
    assert version["validation_report"]["provider"] == "CPUExecutionProvider"
    assert engineer("upload", "iris", str(artifact)).stdout.startswith(
        "iris v1: ready (these bytes were already this version)\n")


def test_upload_exits_1_when_validation_fails(engineer: Paddock, cast: dict[str, Any], teams: dict[str, Any],
                                              celery_worker: Any, tmp_path: Path) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    artifact = tmp_path / "broken.onnx"
    artifact.write_bytes(built.broken_onnx())
    done = engineer("upload", "iris", str(artifact))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == "iris v1: failed"
    assert "  failed    onnx runtime could not load the artifact: " in done.stdout
    assert "\nerror: iris v1 failed validation: onnx runtime could not load the artifact: " in done.stderr
    assert "MatMul" in done.stderr
    as_json = engineer("--json", "models", "versions", "iris")
    assert [(v["number"], v["status"]) for v in json.loads(as_json.stdout)] == [(1, "failed")]


def test_uploads_the_server_refuses_print_its_reason(engineer: Paddock, cast: dict[str, Any],
                                                      teams: dict[str, Any], token_of: Callable[..., str],
                                                      tmp_path: Path) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    text = tmp_path / "notes.txt"
    text.write_bytes(b"these are not the weights you are looking for\n" * 20)
    done = engineer("upload", "iris", str(text))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "error: not a model: the file is neither ONNX nor a TorchScript archive"
    as_json = engineer("upload", "iris", str(text), "--json")
    assert (as_json.returncode, as_json.stderr) == (1, "")
    assert json.loads(as_json.stdout) == {"error": "not a model: the file is neither ONNX nor a TorchScript archive",
                                          "status": 400}
    model = tmp_path / "m.onnx"
    model.write_bytes(built.mlp_onnx())
    viewer = engineer.with_token(token_of("viewer", "read", "manage"))
    refused = viewer("upload", "iris", str(model))
    assert (refused.returncode, refused.stderr.splitlines()[-1]) == (
        1, "error: the engineer role in team 'ml' is required to change this model")
    missing = engineer("upload", "nope", str(model))
    assert (missing.returncode, missing.stderr.splitlines()[-1]) == (1, "error: model 'nope' not found")
    assert not RegisteredModel.objects.get(name="iris").versions.exists()


def test_promote_moves_the_champion_alias(engineer: Paddock, iris: Any) -> None:
    done = engineer("promote", "iris", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "iris: champion -> v2\n"
    # The fixture's deployment names v1 as its active version: the alias alone moves no traffic.
    assert done.stderr == ("note: the deployment of iris names v1 as its active version, so v2 does not serve yet "
                           "(paddock rollout start moves traffic)\n")
    assert Alias.objects.get(model=iris, name="champion").version.number == 2
    as_json = engineer("promote", "iris", "1", "--alias", "stable", "--json")
    assert as_json.returncode == 0
    assert {key: value for key, value in json.loads(as_json.stdout).items() if key != "updated_at"} == {
        "name": "stable", "version": 1}
    missing = engineer("promote", "iris", "9")
    assert (missing.returncode, missing.stderr) == (1, "error: model 'iris' has no version 9\n")
    bad = engineer("promote", "iris", "0")
    assert bad.returncode == 2 and "Invalid value for 'VERSION': 0 is not in the range x>=1." in bad.stderr


def test_an_upload_over_the_servers_limit_is_refused_in_its_words(paddock: Paddock, cast: dict[str, Any],
                                                                  teams: dict[str, Any], token_of: Callable[..., str],
                                                                  tmp_path: Path) -> None:
    """The server answers 413 as soon as it reads the declared length, before the body: the
    command still prints its message, not a broken connection."""
    web, url = spawn_web(tmp_path / "web.log", env=child_env(PADDOCK_MAX_UPLOAD_BYTES="4096"))
    try:
        services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
        big = tmp_path / "big.onnx"
        big.write_bytes(bytes(8 * 1024 * 1024))
        engineer = replace(paddock, env={"PADDOCK_URL": url, "PADDOCK_TOKEN": token_of("engineer")})
        done = engineer("upload", "iris", str(big))
        assert done.returncode == 1
        assert re.fullmatch(r"error: upload is \d+ bytes; the limit is 4096 bytes", done.stderr.splitlines()[-1]), \
            done.stderr
        assert not RegisteredModel.objects.get(name="iris").versions.exists()
    finally:
        stop(web)

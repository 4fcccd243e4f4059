"""Request validation, error bodies, auth digests and deployment options (no Ray)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medbase_ray.config import ConfigError, load_config
from medbase_ray.serve.api import is_authorized, sha256_hex
from medbase_ray.serve.config import ServeConfig
from medbase_ray.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    param_from_loc,
    validation_error,
)


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("body", "max_tokens"), "max_tokens"),
        (("body", "prompt", "list[int]", 0), "prompt[0]"),
        (("body", "prompt", "str"), "prompt"),
        (("body", "messages", 0, "role"), "messages[0].role"),
        (
            ("body", "messages", 1, "content", "list[ContentPart]", 0, "type"),
            "messages[1].content[0].type",
        ),
        (("body", "stream_options", "include_usage"), "stream_options.include_usage"),
        (("body",), None),
    ],
)
def test_param_names_the_field(loc, param):
    assert param_from_loc(loc) == param


def _errors(model, data) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [e | {"loc": ("body", *e["loc"])} for e in info.value.errors()]


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": "m", "prompt": "x", "max_tokens": "5"}, "max_tokens"),  # no coercion
        ({"model": "m", "prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"model": "m", "prompt": "x", "temperature": 2.5}, "temperature"),
        ({"model": "m", "prompt": "x", "top_p": 0}, "top_p"),
        ({"model": "m", "prompt": "x", "n": 0}, "n"),
        ({"model": "m", "prompt": "x", "logprobs": -1}, "logprobs"),
        ({"model": "m", "prompt": "x", "echo": "yes"}, "echo"),
        ({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "m", "prompt": "x", "logit_bias": {"1": 2}}, "logit_bias"),
        ({"model": "m", "prompt": "x", "presence_penalty": 1.0}, "presence_penalty"),
        ({"model": "m", "prompt": 3}, "prompt"),
        ({"model": "m", "prompt": []}, "prompt"),
        ({"model": "m", "prompt": [[1, 2], []]}, "prompt"),
        ({"model": 7, "prompt": "x"}, "model"),
    ],
)
def test_bad_completion_requests_name_the_field(data, param):
    err = validation_error(_errors(CompletionRequest, data))
    assert err.status_code == 400
    assert err.param == param
    assert err.body()["error"]["type"] == "invalid_request_error"
    assert param in err.body()["error"]["message"]


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        ({"model": "m", "messages": "hi"}, "messages"),
    ],
)
def test_bad_chat_requests_name_the_field(data, param):
    assert validation_error(_errors(ChatCompletionRequest, data)).param == param


def test_valid_requests_parse_every_prompt_form():
    for prompt in ("text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]):
        req = CompletionRequest.model_validate({"model": "m", "prompt": prompt, "max_tokens": 0})
        assert req.prompt == prompt
    req = CompletionRequest.model_validate({"model": "m", "prompt": "x", "temperature": 0})
    assert req.temperature == 0.0 and req.stop_strings() == ()
    chat = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
                },
            ],
            "stop": "\n",
        }
    )
    assert chat.plain_messages() == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
    ]
    assert chat.stop_strings() == ("\n",)


def test_invalid_json_is_a_400_without_param():
    err = validation_error(
        [
            {
                "type": "json_invalid",
                "loc": ("body", 3),
                "msg": "JSON decode error",
                "ctx": {"error": "Expecting value"},
            }
        ]
    )
    assert (err.status_code, err.param) == (400, None)
    assert "not valid JSON" in err.message


def test_bearer_key_is_checked_by_digest():
    digest = sha256_hex("s3cret")
    assert is_authorized("Bearer s3cret", digest)
    assert is_authorized("bearer s3cret ", digest)
    assert not is_authorized("Bearer wrong", digest)
    assert not is_authorized("s3cret", digest)
    assert not is_authorized(None, digest)
    assert not is_authorized("Bearer ", digest)


def test_deployment_options_come_from_the_config():
    fixed = ServeConfig(num_replicas=2, num_cpus=3, num_gpus=1, max_ongoing_requests=7)
    options = fixed.deployment_options()
    assert options["num_replicas"] == 2 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 3, "num_gpus": 1}
    assert options["max_ongoing_requests"] == 7
    assert options["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}

    cfg = load_config(preset="cluster-7b")  # the shipped autoscaling preset
    options = cfg.serve.deployment_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 16,
    }


def test_conflicting_replica_settings_fail_naming_the_fields():
    with pytest.raises(ConfigError, match="num_replicas"):
        load_config(overrides=["serve.autoscaling={max_replicas: 2}"])
    with pytest.raises(ConfigError, match="min_replicas"):
        load_config(
            overrides=[
                "serve.num_replicas=null",
                "serve.autoscaling={min_replicas: 3, max_replicas: 2}",
            ]
        )
    with pytest.raises(ConfigError, match="serve.max_batch_siz"):
        load_config(overrides=["serve.max_batch_siz=4"])


def test_serve_accepts_the_deployment_options_of_every_preset():
    from medbase_ray.serve.app import OpenAIDeployment, app_builder

    cfg = load_config(preset="cluster-7b")
    deployment = OpenAIDeployment.options(**cfg.serve.deployment_options())
    assert deployment.ray_actor_options == {"num_cpus": 4, "num_gpus": 1}
    assert (deployment.max_ongoing_requests, deployment.max_queued_requests) == (64, 256)
    assert deployment.backpressure_config.retry_after_s == 1.0
    autoscaling = deployment._deployment_config.autoscaling_config
    assert (autoscaling.min_replicas, autoscaling.max_replicas) == (1, 4)
    assert autoscaling.target_ongoing_requests == 16
    for preset in ("tiny", "qwen2.5-0.5b"):
        app_builder({"checkpoint": "tiny", "preset": preset})  # validates the options
    with pytest.raises(ValidationError, match="chekpoint"):
        app_builder({"chekpoint": "tiny"})


def test_cluster_serve_yaml_is_a_valid_serve_config_of_this_app():
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    import medbase_ray.serve.app as serve_app

    path = Path(__file__).parents[2] / "cluster" / "serve.yaml"
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    (application,) = schema.applications
    module, _, builder = application.import_path.partition(":")
    assert module == "medbase_ray.serve.app"
    built = getattr(serve_app, builder)(application.args)  # the args build the app
    assert type(built).__name__ == "Application"

"""The worker's layered configuration: files, environment, command line; bad input named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dcp_worker.errors import UsageError
from dcp_worker.worker.compute_groups import PUBLIC_GROUP, ComputeGroup, eh1, request_groups
from dcp_worker.worker.config import (
    ConfigLayer,
    WorkerConfig,
    apply_layers,
    environment_layer,
    environment_name,
    load_config,
)

ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """System and user configuration directories of the test's own."""
    (tmp_path / "etc" / "dcp-worker").mkdir(parents=True)
    (tmp_path / "res" / "dcp-worker").mkdir(parents=True)
    monkeypatch.setenv("DCP_RESOURCE_DIR", str(tmp_path / "res"))
    return tmp_path


def environment(root: Path, **variables: str) -> dict[str, str]:
    return {"DCP_ETCDIR": str(root / "etc"), **variables}


def test_the_eh1_hashes_are_dcp_clients() -> None:
    assert eh1("scott tiger") == "eh1-672937c2b944982e071185b888770f8b8ea67c11f56d545e403e0d513c609b87"
    assert PUBLIC_GROUP.join_hash == eh1("public undefined")
    groups = request_groups((ComputeGroup.from_secret("scott", "tiger"),), "SID", public=True)
    assert groups == [
        {"joinKey": "scott", "joinHashHash": eh1("SID" + eh1("scott tiger"))},
        {"joinKey": "public", "joinHashHash": eh1("SID" + PUBLIC_GROUP.join_hash)},
    ]
    assert request_groups((), "SID", public=False) == []


def test_layers_in_order_with_their_sources(isolated: Path) -> None:
    (isolated / "etc" / "dcp-worker" / "config.toml").write_text(
        'maxSandboxes = 1\ncores = "3"\nverbose = 1\n'
    )
    (isolated / "res" / "dcp-worker" / "config.toml").write_text(
        "maxSandboxes = 2\nutilization = {cpu = 0.5}\n"
    )
    explicit = isolated / "mine.toml"
    explicit.write_text(f'maxSandboxes = 3\npaymentAddress = "{ADDRESS.lower()}"\njobIds = ["a"]\n')
    env = environment(isolated, DCP_WORKER_MAX_SANDBOXES="4", DCP_WORKER_JOB_IDS="b;c")
    config = load_config({"maxSandboxes": "5", "jobIds": ["d"]}, explicit, env)
    assert config.max_sandboxes == 5
    assert config.cores_cpu == 3 and config.cores_gpu is None
    assert (config.utilization_cpu, config.utilization_gpu) == (0.5, 0.75)
    assert config.verbose == 1
    assert config.payment_address == ADDRESS
    assert config.job_ids == ("b", "c", "d")  # the command line adds to lists below it
    assert config.sources["maxSandboxes"] == "command line"
    assert config.sources["cores"].endswith("etc/dcp-worker/config.toml")
    assert config.sources["paymentAddress"] == str(explicit)
    assert config.sources["jobIds"] == "command line"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"cores": "7"}, {"cores_cpu": 7.0, "cores_gpu": None}),
        ({"cores": ",1"}, {"cores_cpu": None, "cores_gpu": 1.0}),
        ({"cores": "7,1"}, {"cores_cpu": 7.0, "cores_gpu": 1.0}),
        ({"cores": {"cpu": 2}}, {"cores_cpu": 2.0}),
        ({"utilization": "0.8,0.5"}, {"utilization_cpu": 0.8, "utilization_gpu": 0.5}),
        ({"leavePublicGroup": "false"}, {"leave_public_group": False}),
        ({"leavePublicGroup": True}, {"leave_public_group": True}),
        ({"allowedOrigins": ["http://LOCALHOST:1234/"]}, {"allowed_origins": ("http://localhost:1234",)}),
        ({"scheduler": "http://127.0.0.1:8000"}, {"scheduler": "http://127.0.0.1:8000/"}),
        (
            {"minimumWage": {"CPU": 2}},
            {"minimum_wage": (("CPU", 2.0), ("GPU", 0.0), ("in", 0.0), ("out", 0.0))},
        ),
        (
            {"join": ["scott,tiger", "k," + eh1("x")]},
            {"join": (ComputeGroup.from_secret("scott", "tiger"), ComputeGroup("k", eh1("x")))},
        ),
        ({"join": [{"joinKey": "k", "joinHash": eh1("y")}]}, {"join": (ComputeGroup("k", eh1("y")),)}),
    ],
)
def test_values_in_every_accepted_form(values: dict[str, Any], expected: dict[str, Any]) -> None:
    config = apply_layers([ConfigLayer("test", values)])
    assert {key: getattr(config, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"maxSandbox": 2}, "unknown setting 'maxSandbox' (did you mean 'maxSandboxes'?)"),
        ({"maxSandboxes": -1}, "maxSandboxes: expected a whole number of at least 0"),
        ({"maxSandboxes": 1.5}, "maxSandboxes: expected a whole number, not 1.5"),
        ({"maxSandboxes": "many"}, "maxSandboxes: expected a whole number, not 'many'"),
        ({"cores": "1,2,3"}, "cores: expected cpu[,gpu]"),
        ({"cores": {"cpus": 1}}, "cores: unknown key 'cpus'"),
        ({"utilization": "1.5"}, "utilization: expected fractions"),
        ({"paymentAddress": "0x1234"}, "paymentAddress: not an Ethereum address"),
        ({"output": "fancy"}, "output: expected one of detect, console"),
        ({"join": ["nokey"]}, "join: expected joinKey,joinSecret"),
        ({"join": ["k,eh1-" + "z" * 64]}, "join: the hash for 'k' is not eh1-"),
        ({"join": [{"joinKey": "k"}]}, "join: the group 'k' needs a joinSecret or a joinHash"),
        ({"allowedOrigins": ["ftp://x"]}, "allowedOrigins: expected an origin"),
        ({"scheduler": "scheduler.example"}, "scheduler: expected an http:// or https:// URL"),
        ({"leavePublicGroup": "maybe"}, "leavePublicGroup: expected true or false"),
        ({"minimumWage": "1,2"}, "minimumWage: expected CPU,GPU,in,out"),
        ({"reportInterval": 0}, "reportInterval: expected seconds of at least 0.1"),
        ({"verbose": True}, "verbose: expected a whole number"),
        ({"syslogTransport": "tls"}, "syslogTransport: expected one of udp, tcp, unix"),
    ],
)
def test_bad_values_are_named(values: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError) as refused:
        apply_layers([ConfigLayer("my.toml", values)])
    assert str(refused.value).startswith("my.toml: ")
    assert words in str(refused.value)


def test_files_that_are_not_toml_or_missing_are_named(isolated: Path) -> None:
    broken = isolated / "broken.toml"
    broken.write_text("maxSandboxes = = 2\n")
    with pytest.raises(UsageError, match=r"broken\.toml: not TOML"):
        load_config({}, broken, environment(isolated))
    with pytest.raises(UsageError, match="no such configuration file"):
        load_config({}, isolated / "absent.toml", environment(isolated))
    (isolated / "res" / "dcp-worker" / "config.toml").write_text("cores = 'x'\n")
    with pytest.raises(UsageError, match=r"config\.toml: cores: expected"):
        load_config({}, None, environment(isolated))


def test_environment_variables_are_checked() -> None:
    assert environment_name("maxSandboxes") == "DCP_WORKER_MAX_SANDBOXES"
    assert environment_name("paymentAddress") == "DCP_WORKER_PAYMENT_ADDRESS"
    layer = environment_layer({"DCP_WORKER_PASSPHRASE": "x", "DCP_WORKER_NO_EXTENSIONS": "1", "PATH": "/bin"})
    assert layer.values == {}
    with pytest.raises(UsageError, match="DCP_WORKER_MAX_SANBOXES is not a dcp-worker setting"):
        environment_layer({"DCP_WORKER_MAX_SANBOXES": "2"})


def test_configuration_files_are_never_executed(isolated: Path) -> None:
    sneaky = isolated / "sneaky.toml"
    sneaky.write_text("paymentAddress = \"__import__('os').system('touch pwned')\"\n")
    with pytest.raises(UsageError, match="paymentAddress"):
        load_config({}, sneaky, environment(isolated))
    assert not (isolated / "pwned").exists()


def test_effective_cores_and_sandboxes() -> None:
    config = WorkerConfig(cores_cpu=4, utilization_cpu=0.5, cores_gpu=2, utilization_gpu=0.5)
    assert config.effective_cores() == (2.0, 1.0)
    assert config.sandbox_count() == 2
    assert WorkerConfig(cores_cpu=0.5).sandbox_count() == 1
    assert WorkerConfig(max_sandboxes=3).sandbox_count() == 3
    settings = WorkerConfig().as_settings()
    assert settings["cores"] == {"cpu": None, "gpu": None} and settings["jobIds"] == []

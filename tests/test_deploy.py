"""deploy/: the compose file secure by default (checked statically), the secrets its setup
makes (a real mosquitto with its password file, a real HAProxy config check with its
certificate), and a Grafana dashboard that only queries metrics a real ser-serve exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from ser.config import load_config

from .broker import broker, broker_factory, free_port, wait_port  # noqa: F401 (fixtures)
from .conftest import REPO
from .serve import ServeProcess, make_secrets
from .test_serve import _scrape

DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_publishes_only_the_load_balancer_and_hardens_every_service(compose):
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert name == "haproxy" or str(port).startswith("127.0.0.1:"), (name, port)
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("mem_limit"), name
    assert [str(p) for p in services["haproxy"]["ports"]] == ["8443:8443"]
    for name in ("replica1", "replica2"):
        replica = services[name]
        assert replica["read_only"] is True and replica["cap_drop"] == ["ALL"]
        assert replica["env_file"] == ["secrets/ser.env"]
        assert "ser-state:/var/lib/ser" in replica["volumes"]  # unsent results persist
    # a crash of the service path (a native one in LiteRT, the broker, the balancer) restarts
    for name in ("replica1", "replica2", "mosquitto", "haproxy"):
        assert services[name]["restart"] == "unless-stopped", name
    assert "ports" not in services["mosquitto"]
    assert services["haproxy"]["environment"]["SER_LB_CERT"] == "/etc/ser/ser.pem"


def test_replicas_require_a_token_and_shutdown_fits_the_grace(compose):
    config = load_config(DEPLOY / "ser.toml")
    assert config.serve.token_env == "SER_TOKEN" and not config.serve.insecure
    assert config.mqtt.username and config.mqtt.password_env == "SER_MQTT_PASSWORD"
    grace_s = int(compose["services"]["replica1"]["stop_grace_period"].rstrip("s"))
    budget_s = (
        config.serve.drain_grace_s + config.serve.drain_timeout_s + config.mqtt.flush_timeout_s + 2
    )
    assert budget_s <= grace_s, (budget_s, grace_s)
    containerfile = (DEPLOY / "Containerfile").read_text()
    assert "--home-dir /var/lib/ser" in containerfile and "XDG_STATE_HOME=/var/lib/ser" in (
        containerfile
    )


def test_the_broker_config_refuses_anonymous_clients(tmp_path):
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (scripts/bootstrap installs it)")
    import paho.mqtt.client as paho

    secrets = make_secrets(tmp_path / "secrets")
    env = dict(line.split("=", 1) for line in (secrets / "ser.env").read_text().splitlines())
    assert len(env["SER_TOKEN"]) == 64 and (secrets / "token").read_text() == env["SER_TOKEN"]
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1").replace(
        "/mosquitto/config/passwd", str(secrets / "mosquitto.passwd")
    )
    if os.geteuid() == 0:  # as root it would drop to 'mosquitto', who may not read tmp_path
        conf += "user root\n"
    (tmp_path / "m.conf").write_text(conf)
    broker_proc = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "m.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)

        def connect(user: str | None, password: str | None) -> int:
            client = paho.Client(paho.CallbackAPIVersion.VERSION2)
            if user:
                client.username_pw_set(user, password)
            codes: list = []
            client.on_connect = lambda c, u, f, rc, p=None: codes.append(rc)
            client.connect("127.0.0.1", port)
            deadline = time.monotonic() + 5
            while not codes and time.monotonic() < deadline:
                client.loop(0.1)
            client.disconnect()
            return int(codes[0].value)

        assert connect(None, None) != 0  # anonymous: not authorized
        assert connect("ser", "wrong") != 0
        assert connect("ser", env["SER_MQTT_PASSWORD"]) == 0
    finally:
        broker_proc.terminate()
        broker_proc.wait(timeout=10)


def test_haproxy_accepts_the_config_with_the_setup_certificate(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy not installed (scripts/bootstrap installs it)")
    secrets = make_secrets(tmp_path / "secrets")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SER_LB_BIND": "127.0.0.1:8080",
        "SER_LB_TLS_BIND": "127.0.0.1:8443",
        "SER_LB_CERT": str(secrets / "ser.pem"),
        "SER_REPLICA_1": "127.0.0.1:8765",
        "SER_REPLICA_2": "127.0.0.1:8766",
    }
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        env=env,
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()


def test_dashboard_and_scrape_config_match_what_ser_serve_exports(broker):  # noqa: F811
    dashboard = json.loads((DEPLOY / "grafana" / "ser-dashboard.json").read_text())
    wanted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bser_[a-z_]+", target["expr"])
    }
    with ServeProcess(
        "--workers", "1", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port)
    ) as server:
        time.sleep(0.5)  # connected to the broker
        samples = {name for name, _ in _scrape(server.port)}
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as response:
            text = response.read().decode()
    # families without samples yet (labelled counters nobody incremented) are typed anyway
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    exported = samples | families | {f"{f}_total" for f in families}
    assert wanted and wanted <= exported, wanted - exported
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["authorization"]["credentials_file"] == "/etc/prometheus/token"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    replicas = {f"{name}:8765" for name in compose["services"] if name.startswith("replica")}
    assert set(scrape["static_configs"][0]["targets"]) == replicas

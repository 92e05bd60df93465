"""Bad inventories through the CLI: one line naming file, node and field, exit 2, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InventoryError
from core.inventory import load_inventory

CLI = str(Path(sys.executable).parent / "overlay-tui")
NODE1 = '[[node]]\nname = "n1"\naddress = "198.18.250.1"\n'
NODE2 = '[[node]]\nname = "n2"\naddress = "198.18.250.2"\n'

# (id, inventory text, fragments the message must contain: node and field where there is one)
BAD = [
    ("toml-syntax", NODE1 + "[[node]\n", ["TOML syntax error", "line 4"]),
    ("toml-duplicate-key", NODE1 + 'name = "again"\n', ["TOML syntax error"]),
    ("missing-address", '[[node]]\nname = "n1"\n', ["node 'n1' (#1)", "field 'address'", "missing"]),
    ("missing-name", '[[node]]\naddress = "198.18.250.1"\n', ["node #1", "field 'name'", "missing"]),
    ("no-nodes", '[defaults]\nuser = "root"\n', ["no nodes"]),
    ("duplicate-name", NODE1 + NODE1.replace("250.1", "250.9"), ["node 'n1' (#2)", "field 'name'", "duplicate"]),
    ("duplicate-address", NODE1 + NODE2.replace("250.2", "250.1"), ["node 'n2' (#2)", "field 'address'", "duplicate"]),
    ("duplicate-address-explicit-22", NODE1 + NODE2.replace("250.2", "250.1") + "port = 22\n",
     ["node 'n2' (#2)", "field 'address'"]),
    ("unknown-node-key", NODE1 + 'adress = "x"\n', ["node 'n1' (#1)", "field 'adress'", "unknown key"]),
    ("unknown-defaults-key", '[defaults]\nusr = "root"\n' + NODE1, ["[defaults]", "field 'usr'"]),
    ("unknown-table", "[nodes]\n" + NODE1, ["field 'nodes'", "unknown top-level table"]),
    ("unreadable-key", NODE1 + 'key = "/nonexistent/id_ed25519"\n', ["node 'n1' (#1)", "field 'key'", "does not exist"]),
    ("key-is-a-directory", NODE1 + 'key = "/etc"\n', ["node 'n1' (#1)", "field 'key'", "not a regular file"]),
    ("key-not-a-key", NODE1 + 'key = "/etc/hostname"\n', ["node 'n1' (#1)", "field 'key'", "not an SSH private key"]),
    ("key-is-public", NODE1 + 'key = "PUBKEY"\n', ["field 'key'", "that is a public key"]),
    ("unreadable-default-key", '[defaults]\nkey = "/nonexistent/k"\n' + NODE1, ["node 'n1' (#1)", "field 'key'"]),
    ("port-too-big", NODE1 + "port = 70000\n", ["node 'n1' (#1)", "field 'port'", "1 to 65535"]),
    ("port-zero", NODE1 + "port = 0\n", ["field 'port'"]),
    ("port-string", NODE1 + 'port = "22"\n', ["field 'port'"]),
    ("port-bool", NODE1 + "port = true\n", ["field 'port'"]),
    ("address-bad-octet", NODE1.replace("198.18.250.1", "999.1.1.1"), ["node 'n1' (#1)", "field 'address'"]),
    ("address-short", NODE1.replace("198.18.250.1", "10.1.2"), ["field 'address'"]),
    ("address-with-port", NODE1.replace("198.18.250.1", "198.18.250.1:22"), ["field 'address'"]),
    ("address-spaces", NODE1.replace("198.18.250.1", "bad host"), ["field 'address'"]),
    ("address-empty", NODE1.replace("198.18.250.1", ""), ["field 'address'"]),
    ("address-not-string", '[[node]]\nname = "n1"\naddress = 42\n', ["field 'address'"]),
    ("name-invalid", NODE1.replace('"n1"', '"n 1"'), ["field 'name'"]),
    ("user-invalid", NODE1 + 'user = "ro ot"\n', ["field 'user'"]),
    ("timeout-negative", NODE1 + "connect_timeout = -1\n", ["field 'connect_timeout'"]),
    ("node-not-table", 'node = "n1"\n', ["field 'node'"]),
    ("cluster-bad-port", "[cluster]\netcd_client_port = 99999\n" + NODE1, ["[cluster]", "field 'etcd_client_port'"]),
    ("empty-node-list", "node = []\n", ["no nodes", "field 'node'"]),
    ("name-empty", NODE1.replace('"n1"', '""'), ["node #1", "field 'name'"]),
    ("cluster-unknown-key", "[cluster]\nfoo = 1\n" + NODE1, ["table [cluster]", "field 'foo'", "unknown key"]),
    ("cluster-bad-subnet", '[cluster]\nnetwork_subnet = "10.0.0.0/33"\n' + NODE1, ["[cluster]", "field 'network_subnet'"]),
    ("cluster-subnet-host-bits", '[cluster]\nnetwork_subnet = "10.0.0.1/24"\n' + NODE1, ["field 'network_subnet'", "host bits"]),
    ("cluster-bad-network", '[cluster]\nnetwork = "bad name!"\n' + NODE1, ["[cluster]", "field 'network'"]),
    ("cluster-relative-data-dir", '[cluster]\netcd_data_dir = "etcd"\n' + NODE1, ["field 'etcd_data_dir'", "absolute"]),
    ("cluster-token-shell", '[cluster]\netcd_token = "x; rm -rf /"\n' + NODE1, ["field 'etcd_token'"]),
    ("cluster-same-ports", "[cluster]\netcd_peer_port = 2379\n" + NODE1, ["field 'etcd_peer_port'", "must differ"]),
]


def run_status(inv: Path, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"HOME": str(home)} if home else {})}
    env.pop("OVERLAY_TUI_INVENTORY", None)
    return subprocess.run([CLI, "--inventory", str(inv), "status"], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("text,fragments", [pytest.param(t, f, id=i) for i, t, f in BAD])
def test_bad_inventory_exits_2_with_one_line_naming_file_node_field(tmp_path, text, fragments):
    inv = tmp_path / "inventory.toml"
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDxS6sqYUFnCO0QvNwQfJ8zJRIRlu6hJXNz0D3BzjYjP x\n")
    inv.write_text(text.replace("PUBKEY", str(tmp_path / "id.pub")))
    res = run_status(inv)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert res.stderr.count("\n") == 1, res.stderr
    assert str(inv) in res.stderr
    for frag in fragments:
        assert frag in res.stderr, f"{frag!r} not in {res.stderr!r}"


@pytest.mark.parametrize("case", ["missing", "directory", "not-utf8"])
def test_unreadable_inventory_file(tmp_path, case):
    inv = tmp_path / "inventory.toml"
    if case == "directory":
        inv.mkdir()
    elif case == "not-utf8":
        inv.write_bytes(b"\xff\xfe[[node]]\n")
    res = run_status(inv)
    assert res.returncode == 2 and str(inv) in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_errors_are_typed_with_file_node_field(tmp_path):
    inv = tmp_path / "i.toml"
    inv.write_text(NODE1 + "port = 0\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(inv)
    assert (e.value.path, e.value.node, e.value.field) == (str(inv), "'n1' (#1)", "port")


def test_good_inventory_with_ssh_config_alias(tmp_path):
    """An address may be a Host alias from ~/.ssh/config: ssh's config supplies host name and port."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host my-node\n    HostName 127.0.0.1\n    Port 1\n")
    (home / "kh").write_text("")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "id")], check=True)
    inv = tmp_path / "inventory.toml"
    inv.write_text('[defaults]\nuser = "root"\nkey = "../tmp_home_key"\nknown_hosts = "home/kh"\n\n'
                   '[[node]]\nname = "alias-node"\naddress = "my-node"\n'
                   .replace("../tmp_home_key", str(home / "id")))
    loaded = load_inventory(inv)
    node = loaded.nodes[0]
    assert (node.address, node.port, node.advertise) == ("my-node", None, None)
    assert node.known_hosts == str(home / "kh") and node.user == "root"      # relative to the inventory's dir
    res = run_status(inv, home=home)
    # the inventory is valid (not exit 2); the alias resolved to 127.0.0.1 port 1, which refuses
    assert res.returncode == 1, res.stdout + res.stderr
    assert "alias-node" in res.stdout and "refused" in res.stdout, res.stdout + res.stderr

"""Drives a meshgate agent with py-consul, a third-party Python client of
Consul's HTTP API (the python-consul lineage), as an application would:
KV with blocking reads, check-and-set and locks, sessions, the agent's
services and checks, catalog, health, transactions, events, config entries,
intentions, the CA, prepared queries, status and coordinates.

Usage: py_consul_client.py HOST PORT NODE [acl]. With `acl` (an agent with
ACLs on, default deny, not bootstrapped) it runs the ACL system's steps
instead: bootstrap, policy, role, token, what the token may and may not do,
token self/list/clone/update/delete. Every step asserts what the client got
back; the last line printed is "ALL OK". Run by tests/it/compat.rs.
"""

import base64
import json
import sys
import threading
import time

import consul
from consul import Check

host, port, node = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host=host, port=port)
step = "start"


def check(cond, what):
    if not cond:
        raise AssertionError(f"{step}: {what}")


def denied(f, what):
    try:
        f()
    except consul.ACLPermissionDenied:
        return
    raise AssertionError(f"{step}: {what} was not denied")


if sys.argv[4:] == ["acl"]:
    step = "bootstrap"
    boot = c.acl.bootstrap()
    check(len(boot["SecretID"]) == 36 and boot["Policies"][0]["Name"] == "global-management", f"bootstrap {boot}")
    try:
        c.acl.bootstrap()
        check(False, "a second bootstrap is refused")
    except consul.ConsulException as e:
        check("ACL bootstrap no longer allowed" in str(e), f"second bootstrap: {e}")
    root = consul.Consul(host=host, port=port, token=boot["SecretID"])
    step = "policy and role"
    # py-consul sends the rules as JSON (Consul's JSON form of the rules).
    rules = {"key_prefix": {"carbonio-files/": {"policy": "write"}}, "service": {"carbonio-files": {"policy": "write"}}}
    policy = root.acl.policy.create("files-db", description="the files service", rules=rules)
    check(policy["Name"] == "files-db" and json.loads(policy["Rules"]) == rules, f"policy {policy}")
    check(root.acl.policy.read(policy["ID"])["Description"] == "the files service", "policy read")
    names = {p["Name"] for p in root.acl.policy.list()}
    check({"global-management", "files-db"} <= names, f"policy list {names}")
    role = root.acl.role.create("files", policies_id=[policy["ID"]])
    check(role["Policies"] == [{"ID": policy["ID"], "Name": "files-db"}], f"role {role}")
    check(root.acl.role.read_by_name("files")["ID"] == role["ID"], "role by name")
    step = "token"
    tok = root.acl.token.create(description="files app", roles_id=[role["ID"]])
    check(tok["Roles"][0]["Name"] == "files" and tok["Description"] == "files app", f"token {tok}")
    app = consul.Consul(host=host, port=port, token=tok["SecretID"])
    check(app.acl.token.read_self()["AccessorID"] == tok["AccessorID"], "token self")
    step = "enforcement"
    check(app.kv.put("carbonio-files/db-user", "files") is True, "write under the prefix")
    check(app.kv.get("carbonio-files/db-user")[1]["Value"] == b"files", "read under the prefix")
    denied(lambda: app.kv.put("other/key", "x"), "a write elsewhere")
    denied(lambda: c.kv.put("carbonio-files/anon", "x"), "an anonymous write")
    check(app.agent.service.register("carbonio-files", port=10000) is True, "register its own service")
    denied(lambda: app.agent.service.register("billing", port=10001), "registering another service")
    _, visible = app.catalog.services()
    check("carbonio-files" in visible and "billing" not in visible, f"services filtered {visible}")
    step = "token list, clone, update, delete"
    accessors = {t["AccessorID"] for t in root.acl.token.list()}
    check(tok["AccessorID"] in accessors and boot["AccessorID"] in accessors, f"token list {accessors}")
    twin = root.acl.token.clone(tok["AccessorID"], description="twin")
    check(twin["SecretID"] != tok["SecretID"] and twin["Roles"] == tok["Roles"], f"clone {twin}")
    upd = root.acl.token.update(tok["AccessorID"], description="renamed", roles_id=[role["ID"]])
    check(upd["Description"] == "renamed", f"update {upd}")
    check(root.acl.token.delete(tok["AccessorID"]) is True, "delete")
    denied(lambda: app.kv.put("carbonio-files/db-user", "again"), "a deleted token")
    check(root.acl.token.delete(twin["AccessorID"]) is True, "delete the clone")
    check(root.acl.role.delete(role["ID"]) is True, "role delete")
    check(root.acl.policy.delete(policy["ID"]) is True, "policy delete")
    print("ALL OK")
    sys.exit(0)


# --- KV: put, get, flags, recurse, keys, check-and-set, delete.
step = "kv"
check(c.kv.put("app/config/db", "postgres://db:5432") is True, "put")
check(c.kv.put("app/config/flagged", "x", flags=42) is True, "put with flags")
idx, e = c.kv.get("app/config/db")
check(e["Value"] == b"postgres://db:5432", f"value {e}")
check(e["CreateIndex"] > 0 and e["ModifyIndex"] == e["CreateIndex"], f"indexes {e}")
check(int(idx) >= e["ModifyIndex"], f"index {idx} vs {e}")
_, e = c.kv.get("app/config/flagged")
check(e["Flags"] == 42, f"flags {e}")
_, missing = c.kv.get("app/nothing-here")
check(missing is None, f"missing key {missing}")
_, entries = c.kv.get("app/", recurse=True)
check(sorted(x["Key"] for x in entries) == ["app/config/db", "app/config/flagged"], f"recurse {entries}")
_, keys = c.kv.get("app/", keys=True, separator="/")
check(keys == ["app/config/"], f"keys with separator {keys}")
_, e = c.kv.get("app/config/db")
check(c.kv.put("app/config/db", "stale", cas=e["ModifyIndex"] + 100) is False, "cas with a wrong index")
check(c.kv.put("app/config/db", "v2", cas=e["ModifyIndex"]) is True, "cas with the right index")
check(c.kv.put("app/new", "first", cas=0) is True, "cas=0 creates")
check(c.kv.put("app/new", "second", cas=0) is False, "cas=0 on an existing key")
binary = bytes(range(256))
check(c.kv.put("app/binary", binary) is True, "binary put")
check(c.kv.get("app/binary")[1]["Value"] == binary, "binary round trip")

# --- KV: a blocking read returns when the key changes, with the new index.
step = "kv blocking"
idx, e = c.kv.get("app/config/db")
result = {}


def watcher():
    result["got"] = c.kv.get("app/config/db", index=idx, wait="20s")


t = threading.Thread(target=watcher)
started = time.monotonic()
t.start()
time.sleep(0.5)
check("got" not in result, "the blocking read waited")
c.kv.put("app/config/db", "v3")
t.join(10)
check("got" in result, "the blocking read returned")
new_idx, e = result["got"]
check(e["Value"] == b"v3" and int(new_idx) > int(idx), f"woken with {new_idx} {e}")
check(time.monotonic() - started < 5, "woken by the write, not the wait")
# A wait that runs out answers the same index.
t0 = time.monotonic()
same_idx, _ = c.kv.get("app/config/db", index=new_idx, wait="1s")
check(same_idx == new_idx and time.monotonic() - t0 >= 0.9, "wait ran out")

# --- Sessions and locks.
step = "sessions"
sid = c.session.create(name="leader-election", behavior="delete", ttl=30, lock_delay=0)
check(isinstance(sid, str) and len(sid) == 36, f"session id {sid}")
_, info = c.session.info(sid)
check(info["Name"] == "leader-election" and info["Behavior"] == "delete", f"info {info}")
check(info["TTL"] == "30s", f"ttl {info}")
check(c.kv.put("service/leader", "me", acquire=sid) is True, "acquire")
other = c.session.create(lock_delay=0)
check(c.kv.put("service/leader", "them", acquire=other) is False, "held by another session")
_, e = c.kv.get("service/leader")
check(e["Session"] == sid and e["LockIndex"] == 1 and e["Value"] == b"me", f"lock {e}")
renewed = c.session.renew(sid)
check(renewed["ID"] == sid, f"renew {renewed}")
_, sessions = c.session.list()
check({sid, other} <= {s["ID"] for s in sessions}, f"list {sessions}")
_, on_node = c.session.node(node)
check(sid in {s["ID"] for s in on_node}, f"node sessions {on_node}")
check(c.kv.put("service/leader", "me", release=sid) is True, "release")
check(c.kv.put("service/leader", "them", acquire=other) is True, "acquire after release")
check(c.session.destroy(other) is True, "destroy")
_, e = c.kv.get("service/leader")
check(e is not None and "Session" not in e, f"released on destroy (behavior release) {e}")
c.kv.put("service/ephemeral", "x", acquire=sid)
c.session.destroy(sid)
check(c.kv.get("service/ephemeral")[1] is None, "behavior delete removes the key")

# --- The agent: services with checks, TTL updates, health.
step = "agent services"
check(
    c.agent.service.register(
        "web",
        service_id="web-1",
        address="127.0.0.1",
        port=8080,
        tags=["v1", "primary"],
        meta={"version": "1.2"},
        check=Check.ttl("30s"),
    )
    is True,
    "register web-1",
)
check(c.agent.service.register("web", service_id="web-2", port=8081, tags=["v1"], check=Check.ttl("30s")), "web-2")
services = c.agent.services()
check(services["web-1"]["Port"] == 8080 and services["web-1"]["Meta"] == {"version": "1.2"}, f"services {services}")
checks = c.agent.checks()
check(checks["service:web-1"]["Status"] == "critical", f"new TTL check is critical {checks}")
check(c.agent.check.ttl_pass("service:web-1", "all good") is True, "ttl pass")
check(c.agent.checks()["service:web-1"]["Output"] == "all good", "ttl notes")
_, passing = c.health.service("web", passing=True)
check([s["Service"]["ID"] for s in passing] == ["web-1"], f"passing {passing}")
_, tagged = c.health.service("web", tag="primary")
check([s["Service"]["ID"] for s in tagged] == ["web-1"], f"by tag {tagged}")
check(c.agent.check.ttl_warn("service:web-2") is True, "ttl warn")
_, warning = c.health.state("warning")
check([x["CheckID"] for x in warning] == ["service:web-2"], f"warning state {warning}")
_, hchecks = c.health.checks("web")
check(len(hchecks) == 2, f"service checks {hchecks}")
check(c.agent.check.register("disk", Check.ttl("1m"), check_id="disk") is True, "node check")
check(c.agent.check.ttl_fail("disk", "full") is True, "ttl fail")
_, nchecks = c.health.node(node)
check(any(x["CheckID"] == "disk" and x["Status"] == "critical" for x in nchecks), f"node health {nchecks}")
check(c.agent.check.deregister("disk") is True, "check deregister")
me = c.agent.self()
check(me["Config"]["NodeName"] == node, f"self {me['Config']}")
members = c.agent.members()
check([m["Name"] for m in members] == [node], f"members {members}")

# --- The catalog, written directly (an external service on its own node).
step = "catalog"
check(
    c.catalog.register(
        "db-host",
        "127.0.0.5",
        service={"Service": "orders-db", "ID": "orders-db", "Port": 5432, "Tags": ["postgres"]},
        check={"CheckID": "orders-db-ok", "Name": "db", "Status": "passing", "ServiceID": "orders-db"},
    )
    is True,
    "catalog register",
)
_, dcs = None, c.catalog.datacenters()
check(dcs == ["dc1"], f"datacenters {dcs}")
_, nodes = c.catalog.nodes()
check({n["Node"] for n in nodes} == {node, "db-host"}, f"nodes {nodes}")
# (py-consul sends a registration's node_meta as a query parameter, which
# Consul ignores; filtering by node metadata is tested with the agent's node.)
_, by_meta = c.catalog.nodes(node_meta={"consul-network-segment": ""})
check([n["Node"] for n in by_meta] == [node], f"node-meta {by_meta}")
_, svcs = c.catalog.services()
check(svcs.get("orders-db") == ["postgres"] and sorted(svcs.get("web", [])) == ["primary", "v1"], f"services {svcs}")
_, inst = c.catalog.service("orders-db")
check(inst[0]["ServiceAddress"] == "" and inst[0]["Address"] == "127.0.0.5", f"instances {inst}")
check(inst[0]["ServicePort"] == 5432 and inst[0]["ServiceTags"] == ["postgres"], f"instance {inst[0]}")
_, one = c.catalog.node("db-host")
check("orders-db" in one["Services"], f"node {one}")
_, filtered = c.catalog.service("web", filter_expr='ServiceMeta.version == "1.2"')
check([s["ServiceID"] for s in filtered] == ["web-1"], f"filter {filtered}")

# --- Transactions: all or nothing.
step = "txn"
ok = c.txn.put(
    [
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": base64.b64encode(b"1").decode()}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": base64.b64encode(b"2").decode()}},
        {"KV": {"Verb": "get", "Key": "txn/a"}},
    ]
)
check(len(ok["Results"]) == 3 and ok["Errors"] is None, f"txn {ok}")
_, a = c.kv.get("txn/a")
try:
    c.txn.put(
        [
            {"KV": {"Verb": "set", "Key": "txn/c", "Value": base64.b64encode(b"3").decode()}},
            {"KV": {"Verb": "cas", "Key": "txn/a", "Index": a["ModifyIndex"] + 50, "Value": ""}},
        ]
    )
    check(False, "a failing transaction raises")
except consul.ConsulException as e:
    check("current modify index" in str(e) or "409" in str(e), f"txn error {e}")
check(c.kv.get("txn/c")[1] is None, "nothing of a failed transaction applied")

# --- Events.
step = "events"
ev = c.event.fire("deploy", "v42")
check(ev["Name"] == "deploy", f"fire {ev}")
_, events = c.event.list(name="deploy")
check(events and events[-1]["Payload"] == b"v42", f"list {events}")

# --- Config entries and intentions.
step = "config entries"
check(c.config.set("service-defaults", "orders-db", {"Protocol": "tcp"}) is True, "config set")
entry = c.config.get("service-defaults", "orders-db")
check(entry["Protocol"] == "tcp" and entry["Kind"] == "service-defaults", f"config get {entry}")
check([e["Name"] for e in c.config.list("service-defaults")] == ["orders-db"], "config list")
step = "intentions"
check(c.connect.intentions.upsert("web", "orders-db", action="allow", description="web reads") is True, "upsert")
check(c.connect.intentions.upsert("*", "orders-db", action="deny") is True, "upsert wildcard deny")
got = c.connect.intentions.read("web", "orders-db")
check(got["Action"] == "allow" and got["Description"] == "web reads", f"read {got}")
check(c.connect.intentions.check("web", "orders-db") is True, "check allowed")
check(c.connect.intentions.check("billing", "orders-db") is False, "check denied")
matched = c.connect.intentions.match("destination", "orders-db")
check([i["SourceName"] for i in matched["orders-db"]] == ["web", "*"], f"match {matched}")
check(c.connect.intentions.delete("web", "orders-db") is True, "delete")
check(c.connect.intentions.check("web", "orders-db") is False, "denied once the allow is gone")
check(c.config.delete("service-defaults", "orders-db") is True, "config delete")

# --- The mesh CA.
step = "connect ca"
roots = c.connect.ca.roots()
check(roots["Roots"] and roots["Roots"][0]["Active"] is True, f"roots {roots}")
check(roots["TrustDomain"].endswith(".consul"), f"trust domain {roots['TrustDomain']}")
conf = c.connect.ca.configuration()
check(conf["Provider"] == "consul", f"ca configuration {conf}")

# --- Prepared queries.
step = "prepared queries"
q = c.query.create("web", name="web-passing", onlypassing=True, tags=["v1"])
qid = q["ID"]
res = c.query.execute("web-passing")
check([n["Service"]["ID"] for n in res["Nodes"]] == ["web-1"], f"execute {res}")
check(res["Service"] == "web", f"execute service {res}")
check([x["ID"] for x in c.query.list()] == [qid], "query list")
check(c.query.delete(qid) is True, "query delete")

# --- More of the agent: maintenance (py-consul sends Python's "True"),
# real HTTP and TCP checks, the service definition, filters, snapshots.
step = "agent extras"
check(c.agent.maintenance(True, "kernel upgrade") is True, "node maintenance on")
check("_node_maintenance" in c.agent.checks(), "node maintenance check")
check(c.agent.maintenance(False) is True, "node maintenance off")
check("_node_maintenance" not in c.agent.checks(), "node maintenance check gone")
check(c.agent.service.maintenance("web-1", True, "deploy") is True, "service maintenance")
check("_service_maintenance:web-1" in c.agent.checks(), "service maintenance check")
check(c.agent.service.maintenance("web-1", False) is True, "service maintenance off")
check(
    c.agent.service.register(
        "api", service_id="api-1", port=port, check=Check.http(f"http://{host}:{port}/v1/status/leader", "1s")
    )
    is True,
    "http check",
)
check(c.agent.service.register("raw", port=port, check=Check.tcp(host, port, "1s")) is True, "tcp check")
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    statuses = {k: v["Status"] for k, v in c.agent.checks().items() if k in ("service:api-1", "service:raw")}
    if statuses == {"service:api-1": "passing", "service:raw": "passing"}:
        break
    time.sleep(0.2)
check(statuses == {"service:api-1": "passing", "service:raw": "passing"}, f"checks ran {statuses}")
check(c.agent.service_definition("api-1")["Service"] == "api", "service definition")
check(list(c.agent.services(filter_expr='Service == "api"')) == ["api-1"], "services filter")
check(len(c.snapshot.save()) > 0, "snapshot save")
check(c.discovery_chain.get("api")["Chain"]["ServiceName"] == "api", "discovery chain")
check(c.operator.raft_config()["Servers"][0]["Leader"] is True, "raft configuration")
c.agent.service.deregister("api-1")
c.agent.service.deregister("raw")

# --- Status, coordinates, deregistration.
step = "status"
leader = c.status.leader()
check(leader and ":" in leader, f"leader {leader}")
check(c.status.peers() == [leader], f"peers {c.status.peers()}")
step = "coordinates"
check(c.coordinate.datacenters()[0]["Datacenter"] == "dc1", "coordinate datacenters")
step = "deregister"
check(c.agent.service.deregister("web-2") is True, "agent deregister")
check("web-2" not in c.agent.services(), "gone from the agent")
check(c.catalog.deregister("db-host") is True, "catalog deregister")
_, nodes = c.catalog.nodes()
check([n["Node"] for n in nodes] == [node], f"nodes after {nodes}")
print("ALL OK")

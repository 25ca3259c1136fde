"""Policies: an inline document, a policy file, or a name the daemon knows.

How a `policy=` argument is read:

- a `dict` is a policy document (docs/policy.md), sent inline;
- a `str` or `os.PathLike` naming a **file** is a path: a `PathLike` always, a `str` when it
  contains a `/` or ends in `.json` (the rule `extends` uses, so `"./ci.json"` and
  `"policies/ci.json"` are files). The file is loaded here, by `bunker check FILE` (the
  effective merged policy, its relative paths resolved against this process), and sent inline;
- any other `str` (`"default"`, `"runtime:python"`, `"ci"`) is a **name**: a built-in profile or
  a policy of the daemon's config, sent as `{"name": ...}`;
- `Policy.name(...)`, `Policy.file(...)`, `Policy.inline(...)` say which explicitly.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ._errors import ArgumentError, PolicyError

BIN_ENV = "BUNKER_BIN"
# Profiles every bunker binary knows (a name outside these is only known to a daemon's config).
BUILTIN_PROFILES = frozenset({"default", "runtime:bun", "runtime:python", "eval:bun", "eval:python"})

Json = Dict[str, Any]


@dataclass(frozen=True)
class Policy:
    """An explicit policy choice: exactly one of `document`, `path`, `name_`."""

    document: Optional[Mapping[str, Any]] = None
    path: Optional[str] = None
    name_: Optional[str] = None

    @staticmethod
    def inline(document: Mapping[str, Any]) -> "Policy":
        return Policy(document=document)

    @staticmethod
    def file(path: Union[str, "os.PathLike[str]"]) -> "Policy":
        return Policy(path=os.fspath(path))

    @staticmethod
    def name(name: str) -> "Policy":
        return Policy(name_=name)


PolicyArg = Union[None, Mapping[str, Any], str, "os.PathLike[str]", Policy]


def bunker_bin(explicit: Optional[str] = None) -> str:
    """The CLI: an explicit path, else `BUNKER_BIN`, else `bunker` on PATH."""
    found = explicit or os.environ.get(BIN_ENV) or shutil.which("bunker")
    if not found:
        raise ArgumentError(
            f"the bunker CLI was not found: set {BIN_ENV} or put `bunker` on PATH", "request_invalid"
        )
    return found


def as_policy(policy: PolicyArg, default_name: str = "default") -> Policy:
    if policy is None:
        return Policy(name_=default_name)
    if isinstance(policy, Policy):
        if sum(x is not None for x in (policy.document, policy.path, policy.name_)) != 1:
            raise ArgumentError("policy: a Policy needs exactly one of document, path, name", "request_invalid")
        return policy
    if isinstance(policy, Mapping):
        return Policy(document=policy)
    if isinstance(policy, os.PathLike):
        return Policy(path=os.fspath(policy))
    if isinstance(policy, str):
        if "/" in policy or policy.endswith(".json"):
            return Policy(path=policy)
        if not policy:
            raise ArgumentError("policy: an empty name", "request_invalid")
        return Policy(name_=policy)
    raise TypeError(f"policy: expected a dict, a path, a name or bunker.Policy, not {type(policy).__name__}")


_file_cache: Dict[Tuple[str, int, int, str], Json] = {}


def load_file(path: str, bin_path: Optional[str] = None) -> Json:
    """The effective policy of a file, from `bunker check FILE` (validated, `extends` merged,
    relative paths resolved here). Cached by path, size and mtime."""
    full = os.path.abspath(path)
    try:
        st = os.stat(full)
    except OSError as e:
        raise PolicyError(f"{path}: cannot read the policy file: {e.strerror}", "policy_invalid") from None
    binary = bunker_bin(bin_path)
    key = (full, st.st_size, st.st_mtime_ns, binary)
    cached = _file_cache.get(key)
    if cached is not None:
        return copy.deepcopy(cached)
    proc = subprocess.run([binary, "check", "--document", full], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l.removeprefix("bunker: policy error: ") for l in proc.stderr.splitlines() if l.strip()]
        raise PolicyError("; ".join(lines) or f"bunker check exited {proc.returncode}", "policy_invalid")
    document = json.loads(proc.stdout)  # `--document`: inline-sendable (no `sources`, no nulls)
    _file_cache[key] = document
    return copy.deepcopy(document)


def resolve(
    policy: PolicyArg,
    *,
    memory_limit_bytes: Optional[int] = None,
    env: Optional[Mapping[str, str]] = None,
    default_name: str = "default",
    bin_path: Optional[str] = None,
) -> Tuple[Json, Dict[str, str]]:
    """The protocol's `PolicyChoice` for a request, and the `env` to send beside it.

    `memory_limit_bytes` and `env` are folded into an inline document (`limits.memory`,
    `set_env`); a built-in profile's name becomes `{"extends": [name], ...}` for that. A name only
    the daemon knows keeps its name and gets `env` as the request's `env` (the daemon lets
    through the names in its `allow.env`); a memory limit cannot be put on one.
    """
    choice = as_policy(policy, default_name)
    env = dict(env or {})
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("env: names and values must be str")
    if memory_limit_bytes is not None and (
        not isinstance(memory_limit_bytes, int) or isinstance(memory_limit_bytes, bool) or memory_limit_bytes <= 0
    ):
        raise ArgumentError(
            f"memory_limit_bytes: expected a positive number of bytes, got {memory_limit_bytes!r}",
            "request_invalid",
        )
    if choice.name_ is not None:
        if memory_limit_bytes is None and not env:
            return {"name": choice.name_}, {}
        if choice.name_ not in BUILTIN_PROFILES:
            if memory_limit_bytes is not None:
                raise ArgumentError(
                    f"memory_limit_bytes cannot narrow the daemon's policy {choice.name_!r}: name a "
                    "built-in profile, or pass the policy as a dict or file",
                    "request_invalid",
                )
            return {"name": choice.name_}, env
        document: Json = {"extends": [choice.name_]}
    elif choice.path is not None:
        document = load_file(choice.path, bin_path)
    else:
        assert choice.document is not None
        document = copy.deepcopy(dict(choice.document))
    if memory_limit_bytes is not None:
        document.setdefault("limits", {})
        document["limits"] = dict(document["limits"] or {}, memory=memory_limit_bytes)
    if env:
        document["set_env"] = dict(document.get("set_env") or {}, **env)
    return {"inline": document}, {}

"""A ``solc`` over the project's pinned solcjs, for EZKL and for compiling its verifiers.

EZKL renders verifiers, then compiles them with solc 0.8.20 that it expects svm to have
installed at ``$HOME/.svm/0.8.20/solc-0.8.20``; offline, svm cannot download it. No package
ships a solc CLI over solcjs that accepts ``--standard-json`` on stdin, so this module writes
a small one (``SHIM_JS``) into a throwaway HOME for the worker, and uses the same script to
compile the rendered verifier into the bytecode verinfer deploys. viaIR is always forced off:
EZKL's verifiers hit "stack too deep" under viaIR, and solcjs with viaIR is very slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from verinfer.verify.errors import ZkToolError

SOLCJS_ENV = "VERINFER_SOLCJS"
SVM_VERSION = "0.8.20"  # the version EZKL 23.0.5 asks svm for
EVM_VERSION = "cancun"  # runs on today's L2s; the verifiers use only pre-Cancun precompiles
OPTIMIZER_RUNS = 200
EIP170_MAX_RUNTIME = 24_576
COMPILE_TIMEOUT_S = 300
_SOLCJS_NPM_PATH = Path("tools/node_modules/solc")

SHIM_JS = r"""'use strict';
// solc-compatible CLI over solcjs (written by verinfer.verify.zk_solc).
// --version: prints the solcjs version. --standard-json: compiles the JSON read from stdin.
const fs = require('fs');
const solc = require(process.env.VERINFER_SOLCJS);
const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' +
    solc.version() + '\n');
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('verinfer solc shim: only --version and --standard-json are supported\n');
  process.exit(2);
}
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
input.settings = input.settings || {};
delete input.settings.viaIR;  // verifiers need the legacy pipeline
process.stdout.write(solc.compile(JSON.stringify(input)));
"""


@dataclass(frozen=True)
class Compiled:
    """One compiled contract."""

    name: str
    bytecode: bytes  # creation code
    runtime: bytes  # deployed code
    abi: list[dict[str, object]]


def find_solcjs() -> Path:
    """The pinned solcjs package: ``$VERINFER_SOLCJS`` or the repository's tools folder."""
    env = os.environ.get(SOLCJS_ENV)
    if env:
        path = Path(env)
        if not (path / "index.js").is_file():
            raise ZkToolError(f"{SOLCJS_ENV}={env} is not the npm `solc` package folder")
        return path.resolve()
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = base / _SOLCJS_NPM_PATH
        if (candidate / "index.js").is_file():
            return candidate.resolve()
    raise ZkToolError(
        "the pinned Solidity compiler (npm `solc`) was not found",
        hint=f"run `make setup` (installs tools/node_modules) or set {SOLCJS_ENV}",
    )


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ZkToolError("node is not on PATH", hint="install Node.js 18+ (it runs solcjs)")
    return node


def install_shim(home: Path) -> dict[str, str]:
    """Write the shim where svm looks in ``home``; return the env a worker needs to use it."""
    solcjs = find_solcjs()
    node = find_node()
    script = home / "verinfer-solc-shim.js"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SHIM_JS)
    exe = home / ".svm" / SVM_VERSION / f"solc-{SVM_VERSION}"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(f'#!/bin/sh\nexec "{node}" "{script}" "$@"\n')
    exe.chmod(0o755)
    return {"HOME": str(home), SOLCJS_ENV: str(solcjs)}


def compile_contract(source: str, contract: str, work: Path) -> Compiled:
    """Compile one self-contained Solidity file with the shim; raise with solc's errors."""
    env = {**os.environ, **install_shim(work)}
    std_input = {
        "language": "Solidity",
        "sources": {"Verifier.sol": {"content": source}},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }
    try:
        proc = subprocess.run(
            [find_node(), str(work / "verinfer-solc-shim.js"), "--standard-json"],
            input=json.dumps(std_input).encode(),
            capture_output=True,
            env=env,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ZkToolError(f"solcjs took over {COMPILE_TIMEOUT_S} s on {contract}") from exc
    if proc.returncode != 0:
        raise ZkToolError(f"solcjs failed on {contract}: {proc.stderr.decode()[-500:]}")
    output = json.loads(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ZkToolError(f"{contract} does not compile: {errors[0].get('formattedMessage')}")
    try:
        c = output["contracts"]["Verifier.sol"][contract]
    except KeyError as exc:
        raise ZkToolError(f"solcjs produced no contract named {contract}") from exc
    return Compiled(
        name=contract,
        bytecode=bytes.fromhex(c["evm"]["bytecode"]["object"]),
        runtime=bytes.fromhex(c["evm"]["deployedBytecode"]["object"]),
        abi=c["abi"],
    )

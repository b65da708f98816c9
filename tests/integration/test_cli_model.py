"""`verinfer model ...` end to end on a real anvil, and every bad input it must refuse cleanly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from verinfer.chain.accounts import ANVIL_DEV_KEYS, dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo, free_port
from verinfer.cli import app
from verinfer.home import store_dir
from verinfer.models.registry import RegistryClient
from verinfer.runtime import compile_model

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "models" / "digits_mlp.onnx"
runner = CliRunner()


@pytest.fixture
def cli(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, monkeypatch: pytest.MonkeyPatch
) -> Chain:
    """The CLI pointed at this worker's anvil through VERINFER_RPC_URL."""
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    return chain


def verinfer(*args: str) -> Any:
    return runner.invoke(app, list(args))


def tiny_onnx(path: Path, *, opset: int = 17, dims: list[Any] | None = None) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims or ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims or ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def state(chain: Chain, book: AddressBook) -> tuple[Any, ...]:
    """Everything a failed command must leave untouched."""
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    stored = (
        sorted(p.name for p in store_dir().rglob("*") if p.is_file())
        if store_dir().exists()
        else []
    )
    return (
        chain.w3.eth.get_transaction_count(dev_account(0).address),
        registry.count(),
        stored,
        AddressBook.path_for(chain.chain_id).read_bytes(),
    )


def test_add_then_show_reads_the_same_fields_back(cli: Chain) -> None:
    added = verinfer("model", "add", str(DIGITS), "--name", "digits", "--json")
    assert added.exit_code == 0, added.output
    out = json.loads(added.stdout)
    assert out["model_id"] == 1 and out["cid"].startswith("bafk") and out["tx"].startswith("0x")
    shown = verinfer("model", "show", "1", "--json")
    assert shown.exit_code == 0, shown.output
    back = json.loads(shown.stdout)
    assert {k: back[k] for k in ("model_id", "cid", "tx")} == {
        k: out[k] for k in ("model_id", "cid", "tx")
    }
    assert back["input_shapes"] == [[1, 64]] and back["output_shapes"] == [[1, 10]]
    assert back["owner"] == dev_account(0).address and back["modes"] == ["none"]
    program = compile_model(DIGITS)  # model add compiled it and registered its hashes
    assert (back["program_hash"], back["weights_root"]) == (
        program.program_hash, program.weights_root,
    )  # fmt: skip
    assert out["program_hash"] == program.program_hash
    fetched = verinfer("store", "get", out["cid"], "-o", str(store_dir().parent / "back.onnx"))
    assert fetched.exit_code == 0, fetched.output
    assert (store_dir().parent / "back.onnx").read_bytes() == DIGITS.read_bytes()


def test_terms_commands_and_listing(cli: Chain) -> None:
    terms = ["--price", "0.25", "--royalty-bps", "700", "--modes", "none,optimistic"]
    assert verinfer("model", "add", str(DIGITS), "--name", "digits", *terms).exit_code == 0
    assert verinfer("model", "set-price", "1", "1.5").exit_code == 0
    assert verinfer("model", "deprecate", "1").exit_code == 0
    listed = json.loads(verinfer("model", "list", "--json").stdout)
    assert [(m["model_id"], m["price"], m["deprecated"], m["modes"]) for m in listed] == [
        (1, 1_500_000, True, ["none", "optimistic"])
    ]
    human = verinfer("model", "list")
    assert human.exit_code == 0 and "1.5 TUSD" in human.output and "deprecated" in human.output
    child = verinfer("model", "add", str(DIGITS), "--name", "digits-ft", "--parent", "1", "--json")
    assert json.loads(child.stdout)["model_id"] == 2
    assert json.loads(verinfer("model", "show", "2", "--json").stdout)["parent"] == 1


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "text.onnx").write_text("this is not a model\n")
    (tmp / "truncated.onnx").write_bytes(DIGITS.read_bytes()[:500])
    return {
        "missing": (tmp / "nope.onnx", "does not exist"),
        "empty": (tmp / "empty.onnx", "empty"),
        "not onnx": (tmp / "text.onnx", "not a valid ONNX"),
        "truncated": (tmp / "truncated.onnx", "not a valid ONNX"),
        "old opset": (tiny_onnx(tmp / "op12.onnx", opset=12), "opset"),
        "dynamic dim": (tiny_onnx(tmp / "dyn.onnx", dims=["batch", "width"]), "width"),
    }


def test_bad_model_files_fail_cleanly_and_change_nothing(
    cli: Chain, book: AddressBook, tmp_path: Path
) -> None:
    before = state(cli, book)
    for label, (path, needle) in _bad_files(tmp_path).items():
        result = verinfer("model", "add", str(path), "--name", "x")
        assert result.exit_code == 1, (label, result.output)
        assert needle.lower() in result.output.lower(), (label, result.output)
        assert result.output.startswith("error: ") and "hint:" in result.output, label
        assert "Traceback" not in result.output
    assert state(cli, book) == before


BAD_TERMS: list[tuple[list[str], str]] = [
    (["--royalty-bps", "10001"], "royalty 10001 bps is out of range"),
    (["--price", "-1"], "price"),
    (["--price", "abc"], "price"),
    (["--price", "0.0000001"], "decimals"),
    (["--modes", "none,fast"], "unknown verification mode 'fast'"),
    (["--parent", "42"], "parent model 42 does not exist"),
    (["--batch", "0"], "batch"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD_TERMS)
def test_bad_terms_fail_cleanly_and_change_nothing(
    cli: Chain, book: AddressBook, extra: list[str], needle: str
) -> None:
    before = state(cli, book)
    result = verinfer("model", "add", str(DIGITS), "--name", "d", *extra)
    assert result.exit_code == 1, result.output
    assert needle.lower() in result.output.lower(), result.output
    assert "hint:" in result.output
    assert state(cli, book) == before


def test_non_owner_updates_are_refused(
    cli: Chain, book: AddressBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert verinfer("model", "add", str(DIGITS), "--name", "d").exit_code == 0
    monkeypatch.setenv("VERINFER_PRIVATE_KEY", ANVIL_DEV_KEYS[1])
    checks: list[Callable[[], Any]] = [
        lambda: verinfer("model", "set-price", "1", "9"),
        lambda: verinfer("model", "deprecate", "1"),
    ]
    for run in checks:
        result = run()
        assert result.exit_code == 1 and "VerinferNotModelOwner" in result.output, result.output
        assert "owner" in result.output
    shown = json.loads(verinfer("model", "show", "1", "--json").stdout)
    assert shown["price"] == 0 and shown["deprecated"] is False


def test_unknown_model_and_usage_errors(cli: Chain) -> None:
    result = verinfer("model", "show", "9")
    assert result.exit_code == 1 and "VerinferUnknownModel" in result.output
    usage = verinfer("model", "add", str(DIGITS))  # --name is required
    assert usage.exit_code == 2


def test_rpc_down_is_one_clear_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = verinfer("model", "add", str(DIGITS), "--name", "d", "--rpc-url", url)
    assert result.exit_code == 1
    assert f"cannot reach an EVM RPC at {url}" in result.output and "hint:" in result.output
    assert not store_dir().exists()


def test_no_chain_configured_points_to_the_devnet(tmp_path: Path) -> None:
    result = verinfer("model", "list")
    assert result.exit_code == 1 and "no chain to talk to" in result.output
    assert "verinfer devnet start" in result.output


def test_stale_address_book_says_redeploy(cli: Chain, book: AddressBook) -> None:
    AddressBook(cli.chain_id, {**book.contracts, "ModelRegistry": "0x" + "12" * 20}).save()
    result = verinfer("model", "list")
    assert result.exit_code == 1 and "no code there" in result.output
    assert "verinfer deploy" in result.output


def test_deploy_off_devnet_needs_a_payment_token(cli: Chain) -> None:
    result = verinfer("deploy", "--payment-token", "0x" + "34" * 20)
    assert result.exit_code == 1 and "no contract at payment token address" in result.output

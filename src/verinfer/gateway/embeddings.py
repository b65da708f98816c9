"""OpenAI-compatible ``POST /v1/embeddings`` for the MiniLM sentence-embedding model.

Existing OpenAI clients work unchanged once their HTTP client pays with x402: the request
and response follow OpenAI's embeddings API (``input`` a string or a list of strings,
``encoding_format`` float or base64, ``usage`` in tokens), the vectors are L2-normalized as
OpenAI's and sentence-transformers' are. Each text is one run of the registered model by the
deterministic runtime (its sequence length is the registered program's input length), so
each vector comes with its own receipt (the app adds them under ``receipts``, a key OpenAI
clients ignore).

The body is parsed before payment (``parse``): the price is per text, and a request the model
cannot serve (another model name, a text longer than the sequence length, too many texts) is
refused with 400 before any payment is asked. Texts are never truncated silently.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from verinfer.chain.codec import decode_tensors, encode_tensors
from verinfer.models.programs import quantize_inputs
from verinfer.node.executor import Executor

EMBEDDINGS_ROUTE = "POST /v1/embeddings"
DIMENSIONS = 384


class EmbeddingsInputError(ValueError):
    """A request the embeddings model cannot serve; the message is the client's reason."""


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request (token-id inputs are not supported)."""

    input: str | list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description=f"must be {DIMENSIONS} if given")
    user: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


@dataclass(frozen=True)
class EmbeddingsResult:
    """Per text, in request order: its unit vector, the bytes a receipt signs, its trace root."""

    vectors: list[list[float]]
    prompt_tokens: int  # real tokens, [CLS] and [SEP] included
    runs: list[tuple[bytes, bytes]]  # per text: (encoded input, encoded output), as signed
    trace_roots: list[bytes]  # per text: the execution's 32-byte trace root, as infer's


class EmbeddingsService:
    """Embeds texts with the registered MiniLM model ``model_id``, sold under ``name``."""

    def __init__(
        self, executor: Executor, model_id: int, name: str, *, max_inputs: int = 16
    ) -> None:
        from verinfer.models.minilm import Tokenizer

        self.executor = executor
        self.model_id = model_id
        self.name = name
        self.max_inputs = max_inputs
        self.tokenizer = Tokenizer()
        program = executor.program(model_id)
        shapes = {t.name: t.shape for t in program.inputs}
        if set(shapes) != {"input_ids", "attention_mask", "pool_weights"}:
            raise EmbeddingsInputError(
                f"model {model_id} is not a MiniLM sentence-embedding graph "
                f"(inputs {sorted(shapes)})"
            )
        self.seq_len = int(shapes["input_ids"][-1])

    def parse(self, body: bytes) -> EmbeddingsRequest:
        """The request, checked; ``EmbeddingsInputError`` says what is wrong."""
        try:
            raw = json.loads(body or b"null")
        except json.JSONDecodeError as exc:
            raise EmbeddingsInputError(f"the body is not JSON: {exc}") from exc
        if isinstance(raw, dict) and _token_ids(raw.get("input")):
            # OpenAI accepts token ids of its own tokenizers; MiniLM's ids would be a guess.
            raise EmbeddingsInputError(
                f"input: token-id arrays are not supported by {self.name}; send the text"
            )
        try:
            request = EmbeddingsRequest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise EmbeddingsInputError(f"{where}: {first['msg']}") from exc
        if request.model != self.name:
            raise EmbeddingsInputError(
                f"model {request.model!r} is not served here: use {self.name!r}"
            )
        if request.dimensions is not None and request.dimensions != DIMENSIONS:
            raise EmbeddingsInputError(
                f"{self.name} gives {DIMENSIONS} dimensions, not {request.dimensions}"
            )
        texts = request.texts()
        if not texts:
            raise EmbeddingsInputError("input is empty")
        if len(texts) > self.max_inputs:
            raise EmbeddingsInputError(
                f"{len(texts)} inputs: at most {self.max_inputs} per request"
            )
        for i, text in enumerate(texts):
            self._check_text(i, text)
        return request

    def _check_text(self, i: int, text: str) -> None:
        """Refuse what the model cannot embed whole: ``encode`` would truncate silently."""
        if not text.strip():
            raise EmbeddingsInputError(f"input {i} is empty")
        n = self.tokenizer.count(text)
        if n > self.seq_len:
            raise EmbeddingsInputError(
                f"input {i} has {n} tokens; this model takes at most {self.seq_len} "
                "([CLS] and [SEP] included)"
            )

    def embed(self, request: EmbeddingsRequest) -> EmbeddingsResult:
        """One traced run of the model per text, in order. Each text is checked again (the
        request may not have come through ``parse``): none is ever truncated."""
        program = self.executor.program(self.model_id)
        vectors: list[list[float]] = []
        runs: list[tuple[bytes, bytes]] = []
        roots: list[bytes] = []
        tokens = 0
        texts = request.texts()
        for i, text in enumerate(texts):
            self._check_text(i, text)
        for text in texts:
            feeds = self.tokenizer.encode(text, self.seq_len)
            tokens += int(feeds["attention_mask"].sum())
            encoded = encode_tensors(quantize_inputs(program, feeds))
            output, root = self.executor.run_traced(self.model_id, encoded)
            ((q, scale),) = decode_tensors(output)
            vector = np.ldexp(np.asarray(q, dtype=np.float64), -int(scale))
            norm = float(np.linalg.norm(vector))
            vectors.append((vector / norm if norm > 0 else vector).tolist())
            runs.append((encoded, output))
            roots.append(root)
        return EmbeddingsResult(vectors, tokens, runs, roots)


def _token_ids(value: object) -> bool:
    """Whether ``value`` is OpenAI's token-id input: a list of ints or of lists of ints."""
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(v, int) or isinstance(v, list) for v in value)


def openai_response(result: EmbeddingsResult, model: str, encoding_format: str) -> dict[str, Any]:
    """OpenAI's embeddings response body; each item also carries its run's ``trace_root``, as
    the answer of ``/infer`` in mode none does (a key OpenAI clients ignore)."""

    def encode(vector: list[float]) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        return vector

    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode(v),
                "trace_root": "0x" + r.hex(),
            }
            for i, (v, r) in enumerate(zip(result.vectors, result.trace_roots, strict=True))
        ],
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }

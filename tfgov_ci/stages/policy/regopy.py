"""regopy (Microsoft's rego-cpp) as the policy engine, in a forked child of tfgov-ci.

In-process as far as the caller is concerned (no binary to install), but the interpreter runs in
a fork: a policy that loops is killed at the time limit, and rego-cpp's C++ aborts (it calls
``std::terminate`` on some malformed queries) take down the child, not tfgov-ci. Either way the
gate fails closed.
"""

from __future__ import annotations

import ctypes
import gc
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from tfgov_ci.stages.policy.gate import PolicyGate
from tfgov_ci.stages.policy.interface import QUERY, Engine, EvaluationFailed, Module

_ERROR = re.compile(r"\(error \d+:(?P<file>[^|\s]+)\|(?P<offset>\d+)\|\d+\s+\(errormsg \d+:(?P<msg>[^)]*)\)")


class RegopyEngine(Engine):
    name = "regopy"

    def start(
        self,
        modules: Sequence[Module],
        data: Mapping[str, Any],
        document: Mapping[str, Any],
        timeout_s: float,
    ) -> Callable[[], Any]:
        # Loaded here, before the fork, so that the child starts evaluating at once.
        import regopy  # type: ignore[import-untyped]  # noqa: F401

        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(send, modules, data, document), daemon=True)
        child.start()
        send.close()
        deadline = time.monotonic() + timeout_s

        def wait() -> Any:
            try:
                if not receive.poll(max(0.0, deadline - time.monotonic())):
                    raise EvaluationFailed(f"the policy did not finish within {timeout_s:g} s (a loop?)")
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    child.join(5)
                    raise EvaluationFailed(f"the Rego interpreter crashed (exit {child.exitcode})") from None
            finally:
                # Not joined: the kernel frees the child's memory (300 MB for 10,000 findings,
                # 0.03 s) on the other core while the caller writes its reports; multiprocessing
                # reaps it at the next fork or at exit.
                if child.is_alive():
                    child.kill()
                receive.close()
            if kind == "parse":
                raise EvaluationFailed(_located(str(payload), modules))
            if kind == "error":
                raise EvaluationFailed(f"the policy failed to evaluate ({payload})")
            return payload

        return wait


class RegopyPolicy(PolicyGate):
    name = "regopy"
    engine = RegopyEngine


def _child(send: Connection, modules: Sequence[Module], data: Mapping[str, Any], document: Any) -> None:
    # A cycle collection would touch every object inherited from the parent, copying its pages.
    gc.disable()
    # rego-cpp prints parse errors to stdout: keep them out of tfgov-ci's output.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from regopy import Interpreter, RegoError
    from regopy.rego_shared import rego_output_string, rego_query  # type: ignore[import-untyped]

    try:
        interpreter = Interpreter()
        for module in modules:
            interpreter.add_module(str(module.file), module.text)
        interpreter.add_data_json(json.dumps(data))
        _set_input(interpreter, document)
        # The raw text, parsed here: regopy's own Output parses it too and raises on rego-cpp's
        # occasional invalid JSON; here that becomes a denial like any other error.
        text = rego_output_string(rego_query(interpreter._impl, QUERY))
    except RegoError as exc:
        send.send(("parse", str(exc)))
        return
    except Exception as exc:  # anything else is still a denial, with its reason
        send.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    if text == "undefined":
        send.send(("value", None))
    elif not text.startswith("{"):
        send.send(("error", "rego-cpp gives no detail; `opa eval` shows the message"))
    else:
        try:
            expressions = json.loads(text).get("expressions") or [None]
        except ValueError:
            send.send(("error", "rego-cpp returned a value that is not valid JSON"))
        else:
            send.send(("value", expressions[0]))
    send.close()
    os._exit(0)  # the parent has its answer: no destructors for rego-cpp's 300 MB of nodes


def _located(message: str, modules: Sequence[Module]) -> str:
    """rego-cpp's error as ``file:line: message`` (it reports byte offsets)."""
    texts = {str(m.file): m.text for m in modules}
    found = [
        f"{m['file']}:{texts.get(m['file'], '')[: int(m['offset'])].count(chr(10)) + 1}: {m['msg'].strip()}"
        for m in _ERROR.finditer(message)
    ]
    return "policy does not parse: " + ("; ".join(dict.fromkeys(found)) or message.strip()[:300])


def _set_input(interpreter: Any, document: Any) -> None:
    """The input document into rego-cpp through its C API (for the evaluating child, which exits
    right after), as regopy's ``set_input`` does, but dispatching on exact types, encoding each
    key once and calling the C functions without ctypes' argument conversion: 0.4 s to push
    10,000 findings instead of 0.8 s (regopy's own input builder checks abstract base classes at
    every value). Rego or JSON text (``regoSetInputTerm``, ``regoSetInputJSON``) is slower still:
    2.2 s. rego-cpp then copies the pushed values in (``regoSetInput``): 0.2 s more.

    A string with a quote, a backslash or a control character goes in JSON-quoted, as rego-cpp
    keeps such a string from a policy's source: bare (as regopy's own builder passes it), ``a"b``
    would not equal the policy's ``"a\\"b"``, ``"x"`` would lose its quotes and a backslash would
    come back as invalid JSON. Other strings go in bare: rego-cpp's ``sprintf`` would print the
    quotes of a quoted one."""
    from regopy.rego_shared import rego

    raw = ctypes.CDLL(rego._name)  # the same library, its functions without regopy's argtypes
    handle = ctypes.c_void_p(rego.regoNewInput())
    string, integer, number = raw.regoInputString, raw.regoInputInt, raw.regoInputFloat
    boolean, null, item = raw.regoInputBoolean, raw.regoInputNull, raw.regoInputObjectItem
    obj, array = raw.regoInputObject, raw.regoInputArray
    quote = json.encoder.encode_basestring

    def text(value: str) -> bytes:
        quoted = quote(value)
        return (value if len(quoted) == len(value) + 2 else quoted).encode()

    keys: dict[Any, bytes] = {}

    # Return codes are not checked call by call: after a failure rego-cpp keeps the input in error
    # and every later call returns at once, so one check at the end (regoInputValidate) covers all.
    def add(value: Any) -> None:
        kind = type(value)
        if kind is str:
            string(handle, text(value))
        elif kind is dict:
            for key, child in value.items():
                encoded = keys.get(key)
                if encoded is None:
                    encoded = keys[key] = text(str(key))
                string(handle, encoded)
                if type(child) is str:
                    string(handle, text(child))
                else:
                    add(child)
                item(handle)
            obj(handle, len(value))
        elif kind is list or kind is tuple:
            for child in value:
                if type(child) is str:
                    string(handle, text(child))
                else:
                    add(child)
            array(handle, len(value))
        elif kind is bool:
            boolean(handle, value)
        elif kind is int:
            integer(handle, ctypes.c_int64(value))
        elif kind is float:
            number(handle, ctypes.c_double(value))
        elif value is None:
            null(handle)
        else:
            raise TypeError(f"a {kind.__name__} cannot be a policy input value")

    add(document)
    if raw.regoInputValidate(handle) or rego.regoSetInput(interpreter._impl, handle):
        raise RuntimeError("rego-cpp refused the input document")
    # Not freed (regoFreeInput): rego-cpp keeps its own copy, and the child exits as soon as it
    # has answered; the kernel takes the memory back whole, rego-cpp would free it node by node
    # (0.05 s for 10,000 findings).

"""Python forms of JavaScript values that have no natural Python twin.

Both codecs between Python and JavaScript use them: tagged JSON (``dcp_worker.tagged_json``)
between a supervisor and its sandboxes, and KVIN (``dcp_worker.kvin``) on the DCP network.
Everything else maps to the natural Python value (str, int, float, bool, None, list, dict,
array.array, datetime, ...); the README's tables say which is which.
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

MAX_SAFE_INTEGER: Final = 2**53 - 1

# The array.array type code of each typed array that has one (Uint8ClampedArray has a type of
# its own below; Float16Array has no code).
TYPED_ARRAY_CODES: Final = {
    "Int8Array": "b", "Uint8Array": "B", "Int16Array": "h", "Uint16Array": "H",
    "Int32Array": "i", "Uint32Array": "I", "Float32Array": "f", "Float64Array": "d",
    "BigInt64Array": "q", "BigUint64Array": "Q",
}  # fmt: skip
_TYPED_ARRAY_NAMES: Final = {
    ("signed", 1): "Int8Array", ("signed", 2): "Int16Array", ("signed", 4): "Int32Array",
    ("signed", 8): "BigInt64Array", ("unsigned", 1): "Uint8Array", ("unsigned", 2): "Uint16Array",
    ("unsigned", 4): "Uint32Array", ("unsigned", 8): "BigUint64Array",
    ("float", 4): "Float32Array", ("float", 8): "Float64Array",
}  # fmt: skip


def typed_array_name(kind: str, itemsize: int) -> str | None:
    """The typed array of numbers of a kind ("signed", "unsigned" or "float") and size, if any."""
    return _TYPED_ARRAY_NAMES.get((kind, itemsize))


def typed_array_name_of(values: array.array[Any]) -> str | None:
    """The typed array an array.array travels as, or None for one JavaScript has no twin of."""
    code = values.typecode
    if code == "u":
        return None
    kind = "float" if code in "fd" else "unsigned" if code.isupper() else "signed"
    return typed_array_name(kind, values.itemsize)


class _Singleton:
    _instances: ClassVar[dict[type, Any]] = {}

    def __new__(cls) -> Any:
        if cls not in _Singleton._instances:
            _Singleton._instances[cls] = super().__new__(cls)
        return _Singleton._instances[cls]

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return self.__class__.__name__.removesuffix("Type")


class UndefinedType(_Singleton):
    """JavaScript's ``undefined``, distinct from ``None`` (``null``)."""

    def __repr__(self) -> str:
        return "Undefined"


class HoleType(_Singleton):
    """An empty slot of a sparse JavaScript array (``[1, , 3]``), distinct from ``undefined``."""

    def __repr__(self) -> str:
        return "Hole"


Undefined: Final = UndefinedType()
Hole: Final = HoleType()


class BigInt(int):
    """A JavaScript BigInt. A plain Python int is a JavaScript number when it fits one exactly
    (within ±(2**53 - 1)) and a BigInt otherwise; this type makes any int a BigInt."""

    def __repr__(self) -> str:
        return f"BigInt({int(self)})"


@dataclass(frozen=True)
class JSRegExp:
    source: str
    flags: str = ""


@dataclass(frozen=True)
class JSSymbol:
    description: str | None


@dataclass(frozen=True)
class JSFunction:
    """A function value: its name, and its source where the codec carries it."""

    name: str
    source: str | None = None


@dataclass
class JSError:
    """An Error object as a value (a thrown one fails the slice instead). ``name`` is its
    constructor's (``TypeError``, ...); ``props`` holds its other own properties (``code``, ...)."""

    name: str
    message: str
    stack: str | None = None
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JSBoxed:
    """A boxed primitive: ``new Number(1)``, ``new String('s')`` or ``new Boolean(true)``."""

    value: bool | int | float | str


class JSArray(list[Any]):
    """An array with named properties besides its elements (``a.note = 'x'``)."""

    def __init__(self, items: Any = (), props: dict[str, Any] | None = None) -> None:
        super().__init__(items)
        self.props: dict[str, Any] = props if props is not None else {}

    def __repr__(self) -> str:
        return f"JSArray({list.__repr__(self)}, props={self.props!r})"


class JSSparseArray:
    """An array too sparse to hold slot by slot (``a = []; a[4e9] = 1``): its length, its
    elements by index, and its named properties. Reading a missing index gives ``Hole``."""

    def __init__(
        self, length: int = 0, items: dict[int, Any] | None = None, props: dict[str, Any] | None = None
    ):
        self.length = length
        self.items: dict[int, Any] = items if items is not None else {}
        self.props: dict[str, Any] = props if props is not None else {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.items.get(index, Hole)

    def __setitem__(self, index: int, value: Any) -> None:
        self.items[index] = value
        self.length = max(self.length, index + 1)

    def append(self, value: Any) -> None:
        self[self.length] = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JSSparseArray):
            return NotImplemented
        return (self.length, self.items, self.props) == (other.length, other.items, other.props)

    def __repr__(self) -> str:
        return f"JSSparseArray(length={self.length}, items={self.items!r}, props={self.props!r})"


class JSMap(list[tuple[Any, Any]]):
    """A Map: its entries as (key, value) pairs, in order, whatever the keys (objects too), and
    any named properties the Map object has besides."""

    def __init__(self, entries: Any = (), props: dict[str, Any] | None = None) -> None:
        super().__init__(entries)
        self.props: dict[str, Any] = props if props is not None else {}

    def to_dict(self) -> dict[Any, Any]:
        return dict(self)

    def __repr__(self) -> str:
        extra = f", props={self.props!r}" if self.props else ""
        return f"JSMap({list.__repr__(self)}{extra})"


class JSSet(list[Any]):
    """A Set: its members, in order, whatever they are (objects too)."""

    def __repr__(self) -> str:
        return f"JSSet({list.__repr__(self)})"


class Uint8ClampedArray(array.array):  # type: ignore[type-arg]
    """A Uint8ClampedArray, kept apart from Uint8Array (``array('B')``)."""

    def __new__(cls, initializer: Any = b"") -> Uint8ClampedArray:
        clamped: Uint8ClampedArray = super().__new__(cls, "B", initializer)
        return clamped


class NodeBuffer(bytes):
    """A node ``Buffer``."""


class DataView(bytes):
    """A ``DataView`` over the bytes it shows."""


@dataclass
class JSObject:
    """An object of a constructor Python has no form for (a class instance, a URL, ...), as the
    codec received it: the constructor's name or KVIN index, its own properties, and the
    argument or arguments it is rebuilt with (``arg`` is ``Undefined`` when there is none, which
    KVIN's JSON could not carry anyway)."""

    constructor: str | int
    props: dict[str, Any] = field(default_factory=dict)
    arg: Any = Undefined
    args: tuple[Any, ...] | None = None

"""One public name per concept: no two different objects are exported under the same name.

The public API is every package of `jaxlatent` (its ``__all__``, or else the names it binds
without a leading underscore, submodules excluded: the packages re-export with ``X as X``) and
every module that declares an ``__all__`` (the namespaces such as `jaxlatent.quantizers.dac`),
outside private modules and `jaxlatent.apps` (commands, not library API). A second check covers
every module, `jaxlatent.apps` included: no two public classes share a name.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import pkgutil
import types

import jaxlatent

#: Names exported by several modules as different objects, each with the reason it is still so.
#: An entry that no longer collides fails `test_known_duplicates_are_current`: delete it then.
KNOWN_DUPLICATES: dict[str, str] = {}


def _modules() -> list[types.ModuleType]:
    names = ["jaxlatent"] + [
        info.name for info in pkgutil.walk_packages(jaxlatent.__path__, "jaxlatent.")
    ]
    public = [n for n in names if not any(part.startswith("_") for part in n.split("."))]
    return [importlib.import_module(n) for n in public]


def _is_package(module: types.ModuleType) -> bool:
    return hasattr(module, "__path__")


def _exports(module: types.ModuleType) -> dict[str, object]:
    """The public names of `module` and their objects ({} for a module without ``__all__``)."""
    names = getattr(module, "__all__", None)
    if names is None:
        if not _is_package(module):
            return {}
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and not isinstance(obj, types.ModuleType)
        ]
    return {n: getattr(module, n) for n in names}


def _library(module: types.ModuleType) -> bool:
    name = module.__name__
    return not (name == "jaxlatent.apps" or name.startswith("jaxlatent.apps."))


def _describe(obj: object) -> str:
    if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"{type(obj).__name__} object"


def _exported_collisions() -> dict[str, list[str]]:
    """Name -> ``"where: what"`` for every name exported as two or more different objects."""
    seen: dict[str, dict[int, list[str]]] = collections.defaultdict(dict)
    for module in filter(_library, _modules()):
        for name, obj in _exports(module).items():
            where = f"{module.__name__}.{name} is {_describe(obj)}"
            seen[name].setdefault(id(obj), []).append(where)
    return {
        name: sorted(w for places in by_id.values() for w in places)
        for name, by_id in seen.items()
        if len(by_id) > 1
    }


def test_no_name_is_exported_for_two_objects():
    collisions = {n: w for n, w in _exported_collisions().items() if n not in KNOWN_DUPLICATES}
    assert not collisions, "names exported for different objects:\n" + "\n".join(
        f"  {name}: {'; '.join(where)}" for name, where in sorted(collisions.items())
    )


def test_known_duplicates_are_current():
    stale = sorted(set(KNOWN_DUPLICATES) - set(_exported_collisions()))
    assert not stale, f"KNOWN_DUPLICATES entries {stale} no longer collide: delete them"


def test_no_two_public_classes_share_a_name():
    classes: dict[str, set[str]] = collections.defaultdict(set)
    for module in _modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isclass(obj):
                continue
            if obj.__module__ == module.__name__:  # defined here, not imported
                classes[name].add(f"{obj.__module__}.{obj.__qualname__}")
    shared = {name: sorted(where) for name, where in classes.items() if len(where) > 1}
    assert not shared, "public classes sharing a name:\n" + "\n".join(
        f"  {name}: {', '.join(where)}" for name, where in sorted(shared.items())
    )


def test_the_walk_sees_the_namespaces():
    """The checks above would pass vacuously if the walk missed the modules it is about."""
    exported = {m.__name__: _exports(m) for m in filter(_library, _modules())}
    assert "VectorQuantizer" in exported["jaxlatent.quantizers"]
    assert "VectorQuantize" in exported["jaxlatent.quantizers.dac"]
    assert "VQEmbedding" in exported["jaxlatent.quantizers.piq"]
    assert "VQVAEQuantizer" in exported["jaxlatent.models.pytorch_vae"]
    assert "DACConfig" in exported["jaxlatent.models.dac"]

"""The house plan's "no import cycles" (issue 14): no module of ours reaches itself through its
imports, lazy ones inside functions included (they hid the CLI's cycles before). Imports under
`if TYPE_CHECKING:` are left out: they never run. import-linter checks the layers (`make lint`)."""

from __future__ import annotations

import grimp

PACKAGES = ("partnerwatch", "streams", "sources", "sinks", "detectors", "pipeline")


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported == module:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_a_lazy_cycle(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The check finds a cycle held together by an import inside a function."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyc import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyc", exclude_type_checking_imports=True, cache_dir=None)
    assert graph.find_shortest_chain(importer="cyc.b", imported="cyc.a") == ("cyc.b", "cyc.a")

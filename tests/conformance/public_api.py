#!/usr/bin/env python3
"""The public API of two crates, compared by name: what a user of the first can name that the
second lacks, and what the second adds.

    public_api.py OLD.json NEW.json [--missing-out FILE] [--added-out FILE]

Each input is rustdoc's JSON output for one crate (`cargo +nightly rustdoc --lib -p CRATE --
-Z unstable-options --output-format json`). An item is named by the path a user writes,
following re-exports from the crate root (so a type defined in a private module and re-exported
counts at its public path), with the crate name left out:

    network::Transport                      enum
    network::Transport::Tcp                 variant
    network::Transport::max_message_size    method
    network::Transport: impl Serialize      trait impl (only traits that are not auto or blanket)

Signatures are not compared (rustdoc's JSON type trees are long and version-specific); the
signature differences that compile differently are listed by hand in
docs/migrating-from-message-io.md. Exits 0; the caller decides what a difference means.
"""

import argparse
import json

# Auto and blanket traits rustdoc lists on every type; they say nothing about the API.
NOISE_TRAITS = {
    "Send", "Sync", "Unpin", "UnwindSafe", "RefUnwindSafe", "Freeze", "StructuralPartialEq",
    "Any", "Borrow", "BorrowMut", "From", "Into", "TryFrom", "TryInto", "ToOwned", "ToString",
    "CloneToUninit", "VZip", "Pointable", "Same", "IntoEither", "ErasedDestructor",
    "ToSocketAddrs",
}


def api(path):
    with open(path) as f:
        doc = json.load(f)
    index = doc["index"]
    items = {}

    def item(i):
        return index.get(str(i)) or index.get(i)

    def add(name, kind):
        items.setdefault(name, kind)

    def impls_of(node, owner):
        for impl_id in node.get("impls", []):
            imp = item(impl_id)
            if imp is None:
                continue
            body = imp["inner"]["impl"]
            if body.get("is_synthetic") or body.get("blanket_impl") is not None:
                continue
            trait = body.get("trait")
            if trait is None:
                for member in body["items"]:
                    m = item(member)
                    if m and m.get("visibility") == "public" and m.get("name"):
                        kind = next(iter(m["inner"]))
                        add(f"{owner}::{m['name']}", "method" if kind == "function" else kind)
            else:
                name = trait["path"].split("::")[-1]
                if name not in NOISE_TRAITS:
                    add(f"{owner}: impl {name}", "trait impl")

    def visit(node_id, prefix, seen):
        node = item(node_id)
        if node is None or node_id in seen:
            return
        seen = seen | {node_id}
        kind = next(iter(node["inner"]))
        body = node["inner"][kind]
        name = node.get("name")
        if kind == "use":
            target = body.get("id")
            if body.get("is_glob"):
                if target is not None and item(target) and "module" in item(target)["inner"]:
                    for child in item(target)["inner"]["module"]["items"]:
                        visit(child, prefix, seen)
                return
            if target is None:
                add("::".join(prefix + [body["name"]]), "re-export of an external item")
                return
            target_node = item(target)
            if target_node is None:  # an item of another crate
                add("::".join(prefix + [body["name"]]), "re-export of an external item")
                return
            # Visit the target under the name the `use` gives it.
            visit_named(target, prefix, body["name"], seen)
            return
        visit_named(node_id, prefix, name, seen)

    def visit_named(node_id, prefix, name, seen):
        node = item(node_id)
        kind = next(iter(node["inner"]))
        body = node["inner"][kind]
        if node.get("visibility") not in ("public", None) and kind != "module":
            return
        path = prefix + [name] if name else prefix
        full = "::".join(path)
        if kind == "module":
            if not body.get("is_crate"):
                if node.get("visibility") != "public":
                    return
                add(full, "module")
            for child in body["items"]:
                visit(child, path if not body.get("is_crate") else [], seen | {node_id})
            return
        add(full, kind)
        if kind == "enum":
            for v in body["variants"]:
                add(f"{full}::{item(v)['name']}", "variant")
        if kind == "struct":
            fields = body["kind"].get("plain", {}).get("fields", [])
            for fid in fields:
                fnode = item(fid)
                if fnode and fnode.get("visibility") == "public":
                    add(f"{full}.{fnode['name']}", "field")
        if kind == "trait":
            for member in body["items"]:
                m = item(member)
                if m:
                    add(f"{full}::{m['name']}", "trait item")
        if kind in ("struct", "enum", "union"):
            impls_of(body, full)

    visit(doc["root"], [], set())
    return items


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--missing-out")
    parser.add_argument("--added-out")
    args = parser.parse_args()
    old, new = api(args.old), api(args.new)
    missing = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    for title, names, source, out in (
        ("in message-io 0.19.0, not in portnet", missing, old, args.missing_out),
        ("new in portnet", added, new, args.added_out),
    ):
        lines = [f"{n}  ({source[n]})" for n in names]
        print(f"## {len(names)} public items {title}")
        print("\n".join(lines) + ("\n" if lines else ""))
        if out:
            with open(out, "w") as f:
                f.write("\n".join(lines) + "\n")
    print(f"common: {len(set(old) & set(new))}, missing: {len(missing)}, added: {len(added)}")


if __name__ == "__main__":
    main()

"""The YAML loader of params.yaml: PyYAML's safe loader, refusing a key given twice in one mapping,
which plain YAML resolves by keeping the last one silently."""

import yaml


class DuplicateKey(yaml.YAMLError):
    """A mapping of the YAML file gives one key twice (``key``: its dotted path; ``lines``: both, from 1)."""

    def __init__(self, key, lines):
        super().__init__(f"{key}: given twice, on lines {lines[0]} and {lines[1]}")
        self.key, self.lines = key, lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that gives a key twice (plain YAML keeps the last silently).

    Keys merged in with ``<<: *anchor`` may be overridden, as YAML intends; keys written out may not.
    """

    def construct_document(self, node):
        self._paths = {}
        _note_paths(node, "", self._paths)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader refuses it below
                    continue
                if first is not key_node:
                    parent = self._paths.get(id(node), "")
                    raise DuplicateKey(f"{parent}.{key}" if parent else str(key),
                                       (first.start_mark.line + 1, key_node.start_mark.line + 1))
        return super().construct_mapping(node, deep=deep)


def _note_paths(node, path, paths):
    """``paths[id(node)]``: the dotted path (``distill.student``, ``architectures.fc[1]``) of each node under ``node``."""
    if id(node) in paths:  # an alias: named where it first appears
        return
    paths[id(node)] = path
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _note_paths(value_node, f"{path}.{key}" if path else key, paths)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _note_paths(item, f"{path}[{position}]", paths)

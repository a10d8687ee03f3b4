"""Errors that name the problem: which op, which node, which file, which flag."""


class EdgesalError(Exception):
    """Base class: every error edgesal raises on bad input is one of these."""


class ModelLoadError(EdgesalError):
    """A model file is missing, unreadable, corrupt or not the format it claims."""


class UnsupportedOpError(EdgesalError):
    """The gradient path crosses operators that have no gradient rule."""

    def __init__(self, nodes: list[tuple[str, str]], supported: list[str]):
        self.nodes = nodes
        self.supported = supported
        listed = "\n".join(f"  - {op} (node '{name}')" for op, name in nodes)
        super().__init__(
            "no gradient rule for these operators on the path from the input to the target:\n"
            f"{listed}\nsupported operators: {', '.join(sorted(supported))}"
        )


class InputError(EdgesalError):
    """The model has no usable image input, or the flags describing it are wrong."""


class TargetError(EdgesalError):
    """The target specification is malformed or out of range for the model."""


class ArchiveError(EdgesalError):
    """A weight archive is corrupt or holds something other than tensors."""


class UnsupportedAttributeError(EdgesalError):
    """The operator has a gradient rule, but not for this attribute value or non-constant input."""

    def __init__(self, ctx, detail: str):
        self.op_type = ctx.node.op_type
        self.node = ctx.node.name or f"unnamed, output {ctx.node.output[0]}"
        super().__init__(f"cannot differentiate {self.op_type} node '{self.node}': {detail}")

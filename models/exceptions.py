"""Errors of the models package. Each says what the analyst or operator should do."""


class ModelsError(Exception):
    """Root of the models package's errors."""


class DatasetError(ModelsError):
    """A labelled file cannot be used as given. Analyst: fix the named column or rows."""


class ArtifactError(ModelsError):
    """A model artifact is missing, malformed or of an unknown version. Operator: the running
    model stays in force; re-train or restore the artifact named in the message."""


class PolicyError(ModelsError):
    """A fraud policy file is malformed, unsafe or inconsistent (thresholds, a rule, its
    expression). Analyst: fix what the message names (rule and column); the running policy
    stays in force until a valid one replaces it."""


class ExpressionError(PolicyError):
    """A rule's expression is not in the language, or uses a name or type it may not.
    ``column`` is 1-based, in the expression's text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.detail = message
        self.column = column


class ScenarioError(ModelsError):
    """The simulator cannot be configured as asked. Analyst: change the named setting."""

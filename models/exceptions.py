"""Errors of the models package. Each says what the analyst or operator should do."""


class ModelsError(Exception):
    """Root of the models package's errors."""


class DatasetError(ModelsError):
    """A labelled file cannot be used as given. Analyst: fix the named column or rows."""


class ArtifactError(ModelsError):
    """A model artifact is missing, malformed or of an unknown version. Operator: the running
    model stays in force; re-train or restore the artifact named in the message."""


class ScenarioError(ModelsError):
    """The simulator cannot be configured as asked. Analyst: change the named setting."""

"""The project folder: ``tailorkit.yaml`` and the definition files, validated on load."""

from tailorkit.project.loader import ConfigError, Project, Settings, load_project

__all__ = ["ConfigError", "Project", "Settings", "load_project"]

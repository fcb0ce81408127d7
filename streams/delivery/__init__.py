"""The delivery executor: action commands carried out against destinations."""

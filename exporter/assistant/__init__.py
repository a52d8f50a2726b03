"""The ops assistant: `augur ask` questions and `augur report` (issue 16)."""

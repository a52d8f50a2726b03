"""The ops assistant: `augur ask` (questions in English or Chinese) and `augur report`."""

"""Talking to the nodes: one command fanned out to N nodes at once, Lua scripts, error mapping.

This package knows Redis and concurrency but decides nothing about quorum or validity: it returns
one ``NodeReply`` or ``NodeError`` per node and lets ``_algorithm`` decide. It is the only place
that catches ``redis`` exceptions.
"""

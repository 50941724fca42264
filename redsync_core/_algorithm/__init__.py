"""The Redlock algorithm, sans I/O.

Every Redlock decision lives here: quorum, validity and drift, the retry policy, when to release
everywhere, which error to raise. This package must not open sockets, read a clock, sleep, log,
or import asyncio, threading, time or redis: elapsed time arrives in the replies (``Tally``) and
the random source is passed in. The sync and asyncio drivers only forward effects and replies.
"""

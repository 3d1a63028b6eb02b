#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run the unit tests of scripts/verdict.py, one verdict line per test.

  run.py            prints "ok host:verdict:TEST" or "not ok host:verdict:TEST # why"
                    per test; exit status 1 if one failed
  run.py --count    prints the number of tests

TEST is the test method's name (test_verdict.py). Python 3 standard library
only.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "host:verdict:"


def tests():
    """Every test of this directory's test_*.py, in a flat list."""
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    out = []

    def walk(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            else:
                out.append(t)
    walk(suite)
    return out


def reason(err):
    """A one-line reason from an (exc type, value, traceback) triple."""
    kind, value, _ = err
    text = str(value).strip().splitlines()
    text = text[0] if text else ""
    if kind is not AssertionError:
        text = "%s: %s" % (kind.__name__, text)
    return text[:200] or kind.__name__


class Result(unittest.TestResult):
    """Collects the first failure of each test (subtests included)."""

    def __init__(self):
        super().__init__()
        self.why = {}

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.why.setdefault(test.id(), reason(err))

    def addError(self, test, err):
        super().addError(test, err)
        self.why.setdefault(test.id(), reason(err))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.why.setdefault(test.id(), reason(err))

    def addSkip(self, test, why):
        super().addSkip(test, why)
        self.why.setdefault(test.id(), "skipped: " + why)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.why.setdefault(test.id(), "unexpected success")


def main(argv):
    all_tests = tests()
    if "--count" in argv:
        print(len(all_tests))
        return 0
    failed = 0
    for t in all_tests:
        res = Result()
        t.run(res)
        name = t.id().rsplit(".", 1)[-1]
        why = res.why.get(t.id())
        if why is None:
            print("ok %s%s" % (PREFIX, name))
        else:
            failed += 1
            print("not ok %s%s # %s" % (PREFIX, name, why.replace("\n", " ")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run unittest tests and write a JUnit XML report: `python3 -m tests.junit REPORT PATTERN`."""

import sys
import time
import unittest
from xml.etree import ElementTree


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cases = []
        self._started = 0.0

    def startTest(self, test) -> None:  # noqa: N802
        self._started = time.monotonic()
        super().startTest(test)

    def _add(self, test, status, message="") -> None:
        cls = type(test)
        self.cases.append((f"{cls.__module__}.{cls.__qualname__}", test._testMethodName,
                           time.monotonic() - self._started, status, message))

    def addSuccess(self, test) -> None:  # noqa: N802
        super().addSuccess(test)
        self._add(test, "passed")

    def addFailure(self, test, err) -> None:  # noqa: N802
        super().addFailure(test, err)
        self._add(test, "failure", str(err[1]))

    def addError(self, test, err) -> None:  # noqa: N802
        super().addError(test, err)
        self._add(test, "error", str(err[1]))

    def addSkip(self, test, reason) -> None:  # noqa: N802
        super().addSkip(test, reason)
        self._add(test, "skipped", reason)


def main(report: str, pattern: str) -> int:
    suite = unittest.defaultTestLoader.discover("tests", pattern=pattern, top_level_dir=".")
    runner = unittest.TextTestRunner(resultclass=_Recorder, verbosity=2, stream=sys.stdout)
    result = runner.run(suite)
    root = ElementTree.Element("testsuite", name=pattern, tests=str(len(result.cases)),
                               failures=str(len(result.failures)), errors=str(len(result.errors)))
    for classname, name, seconds, status, message in result.cases:
        case = ElementTree.SubElement(root, "testcase", classname=classname, name=name,
                                      time=f"{seconds:.3f}")
        if status != "passed":
            ElementTree.SubElement(case, status, message=message)
    ElementTree.ElementTree(root).write(report, encoding="utf-8", xml_declaration=True)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""Add up the JUnit XML reports of the parallel pytest groups into one closing line."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree


def main(paths: list[str]) -> int:
    totals = {'tests': 0, 'failures': 0, 'errors': 0, 'skipped': 0}
    for path in paths:
        root = ElementTree.parse(path).getroot()
        suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
        for suite in suites:
            for key in totals:
                totals[key] += int(suite.get(key, 0))
    failed = totals['failures'] + totals['errors']
    passed = totals['tests'] - failed - totals['skipped']
    print(f'tests: {passed} passed, {failed} failed, {totals["skipped"]} skipped')
    return 1 if failed or passed == 0 else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

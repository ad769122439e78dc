"""Print the path of a pydicom / pydicom-data test file: testdata.py NAME."""
import sys

from pydicom.data import get_testdata_file

path = get_testdata_file(sys.argv[1])
if path is None:
    sys.exit(f"test file {sys.argv[1]} not found (is pydicom-data installed?)")
print(path)

import sys
from pathlib import Path

# contract_toys.py is imported by the tests here and by the fresh-process loader of test_artifacts.py
sys.path.insert(0, str(Path(__file__).resolve().parent))

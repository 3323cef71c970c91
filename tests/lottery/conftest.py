import sys
from pathlib import Path

# lottery_toys.py is shared by the tests of this folder
sys.path.insert(0, str(Path(__file__).resolve().parent))

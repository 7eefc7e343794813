#!/usr/bin/env python
from ipr.cli import main

if __name__ == "__main__":
    main()

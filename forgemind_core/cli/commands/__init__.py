"""The ``forge`` CLI's commands, one module per area. Each module imports only click, rich and
the kernel's light modules at import time, so ``forge --help`` stays fast."""

import sys

from webhook_service.cli import main

sys.exit(main())

"""``python -m bertscape.book``: build the book (:func:`bertscape.book.build.main`)."""
import sys

from bertscape.book.build import main

sys.exit(main())

"""`python -m partnerwatch`: the same command line as the `partnerwatch` script."""

from partnerwatch.main import main

main()

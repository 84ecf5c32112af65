"""`python -m flashsale_operator`: run the FlashSale operator."""

from flashsale_operator import bootstrap

bootstrap.main()

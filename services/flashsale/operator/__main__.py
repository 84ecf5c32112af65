"""`python -m flashsale.operator`: run the FlashSale operator."""

from flashsale.operator import bootstrap

bootstrap.main()

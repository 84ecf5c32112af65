"""`flashsale loadtest`: a spike of simulated shoppers against the purchase pipeline, checked and reported."""

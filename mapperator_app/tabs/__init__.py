"""One module per tab of the app's page; each has ``build(ctx, demo)`` called inside the tab."""

"""Points service: purchase amount in JPY -> points; balances and redemptions."""

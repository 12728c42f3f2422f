DROP TABLE aliases;
DROP TABLE accounts;

mod activity;

package org.conflictdesk.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import jakarta.persistence.EntityManagerFactory;
import org.apache.commons.dbcp2.BasicDataSource;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

import java.util.Properties;
import javax.sql.DataSource;

/**
 * Storage side: HAPI's R4 JPA configuration plus the few beans HAPI expects the embedding
 * application to provide (DataSource, entity manager factory, transaction manager, settings).
 */
@Configuration
@Import({
	JpaR4Config.class, // R4 DAOs, system DAO/provider, terminology; imports HAPI's JpaConfig
	HapiJpaConfig.class, // paging provider, stale-search cleanup, full-text svc, resource counts
	JpaBatch2Config.class, // batch2 job persistence: needed by $delete-expunge, reindex, merge
	Batch2JobsConfig.class, // the batch2 job definitions themselves
	ThreadPoolFactoryConfig.class, // task executors some HAPI services ask for
	// In-memory message broker (IBrokerClient): batch2's work notification channel, and the
	// subscription channels MDM rides on (the Submitter/Processor configs are in MdmConfig).
	SubscriptionChannelConfig.class,
})
public class JpaStorageConfig {

	@Value("${conflictdesk.db.url}")
	private String dbUrl;

	@Value("${conflictdesk.db.username}")
	private String dbUsername;

	@Value("${conflictdesk.db.password}")
	private String dbPassword;

	@Value("${conflictdesk.db.max-connections:10}")
	private int dbMaxConnections;

	/** Plain dbcp2 pool (already on HAPI's classpath) on PostgreSQL. */
	@Bean(destroyMethod = "close")
	public BasicDataSource dataSource() {
		BasicDataSource ds = new BasicDataSource();
		ds.setDriverClassName("org.postgresql.Driver");
		ds.setUrl(dbUrl);
		ds.setUsername(dbUsername);
		ds.setPassword(dbPassword);
		ds.setMaxTotal(dbMaxConnections);
		return ds;
	}

	/**
	 * The sync engine's requirements (see deploy/hapi-fhir/README.md).
	 */
	@Bean
	public JpaStorageSettings storageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();
		// Client-assigned ids of any shape (numeric too); server-assigned ids are UUIDs so they
		// can never collide with a client-assigned numeric id.
		s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY);
		s.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.UUID);
		// Never answer a search from the 60 s search-result cache: polling must see fresh data.
		s.setReuseCachedSearchResultsForMillis(null);
		// Writes may arrive in any order: create placeholders for missing targets, don't reject.
		s.setAutoCreatePlaceholderReferenceTargets(true);
		s.setEnforceReferentialIntegrityOnWrite(false);
		s.setAllowExternalReferences(true);
		// Conditional delete with several matches (test clean-up).
		s.setAllowMultipleDelete(true);
		// $expunge and $delete-expunge, for clean slates between tests.
		s.setExpungeEnabled(true);
		s.setDeleteExpungeEnabled(true);
		// Version history is what _history / _since and If-Match rely on (HAPI's default; explicit).
		s.setResourceDbHistoryEnabled(true);
		// No full-text backend is configured (hibernate.search.enabled=false).
		s.setAdvancedHSearchIndexing(false);
		s.setHibernateSearchIndexFullText(false);
		s.setHibernateSearchIndexSearchParams(false);
		return s;
	}

	/** Partitioning off; HapiEntityManagerFactoryUtil and many services look this bean up. */
	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	/** Binary resources stored in the database (the JPA config's binary interceptor needs one). */
	@Bean
	public IBinaryStorageSvc binaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	/** HAPI's entity manager factory (registers its entities, converters and naming strategy). */
	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(dataSource);
		Properties p = new Properties();
		p.put("hibernate.dialect", HapiFhirPostgresDialect.class.getName());
		p.put("hibernate.hbm2ddl.auto", "update"); // creates the ~100 tables on first start
		p.put("hibernate.search.enabled", "false");
		p.put("hibernate.format_sql", "false");
		p.put("hibernate.show_sql", "false");
		p.put("hibernate.jdbc.batch_size", "20");
		p.put("hibernate.cache.use_query_cache", "false");
		p.put("hibernate.cache.use_second_level_cache", "false");
		p.put("hibernate.cache.use_structured_entries", "false");
		p.put("hibernate.cache.use_minimal_puts", "false");
		emf.setJpaProperties(p);
		return emf;
	}

	/** @Primary because batch2 and others also declare transaction managers. */
	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}
}

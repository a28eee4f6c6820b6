package org.conflictdesk.hapi;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.interceptor.UserRequestRetryVersionConflictsInterceptor;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.mdm.provider.MdmProviderLoader;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * HTTP side: one HAPI RestfulServer servlet on /fhir/* exposing every R4 resource type.
 */
@Configuration
public class FhirRestConfig {

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			MdmProviderLoader mdmProviderLoader) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		// $mdm-query-links, $mdm-update-link, $mdm-merge-golden-resources, ...: added to the provider
		// factory here, before it is read below (MdmLoader adds it again after start-up, too late).
		mdmProviderLoader.loadProvider();
		// One provider per R4 resource type: CRUD, conditional ops, search, _history, $validate.
		server.registerProviders(resourceProviders.createProviders());
		// System level: transaction/batch bundles, system _history, $expunge, $meta.
		server.registerProvider(systemProvider);
		// CapabilityStatement (/metadata) reflecting the JPA search parameters.
		server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport));
		// Page search/_history results through the database rather than memory. HapiJpaConfig's
		// provider defaults to pages of 10, max 50; a sync engine reading _history wants bigger.
		pagingProvider.setDefaultPageSize(20);
		pagingProvider.setMaximumPageSize(500);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		// ETags (ETag: W/"n", If-Match checks) are on by default in RestfulServer.
		// Opt-in per request: a client sending "X-Retry-On-Version-Conflict: retry; max-retries=N"
		// gets a server-side retry when two writers race (e.g. concurrent conditional creates
		// answer 409 otherwise). An explicit stale If-Match still answers 409.
		server.registerInterceptor(new UserRequestRetryVersionConflictsInterceptor());
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer server) {
		ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(server, "/fhir/*");
		reg.setName("fhir");
		reg.setLoadOnStartup(1); // initialise HAPI at start-up, not on the first request
		return reg;
	}
}
